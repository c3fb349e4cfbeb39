"""nipype interfaces: thin wrappers that run one core function of bids-deface each."""
