"""Command line of bids-deface: ``parser`` builds the arguments, ``run`` runs them."""
