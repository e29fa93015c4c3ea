-- Train on the rest: drop the held-out events (inside the evaluation's rolled-back
-- transaction; the caller then recomputes the user vectors from what is left).
delete from pyembed.events e using pyembed_eval_heldout h where e.event_id = h.event_id;
