-- The popularity cache from the training events only (rolled back with the rest).
select pyembed.refresh_popularity(force => true)
