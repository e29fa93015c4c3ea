-- How many queued users a refresh can take now (its progress bar's total).
select count(*) from pyembed.user_queue where not_before <= now()
