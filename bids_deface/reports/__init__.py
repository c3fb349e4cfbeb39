"""Reports for people: the group summary of every image (and, in qc/, the participant QC reports)."""
