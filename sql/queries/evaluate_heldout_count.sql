select count(*) from pyembed_eval_heldout
