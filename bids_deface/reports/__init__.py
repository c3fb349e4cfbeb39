"""Reports for people, made from the Jinja2 templates in ``templates/``: the group summary of
every image (:mod:`.group`, in the output: it may be shared) and the curator's QC reports
(:mod:`.participant`, in the QC folder: they show the original face)."""
