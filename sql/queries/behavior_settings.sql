-- Half-lives (seconds; 0 = none) of popularity, as pyembed.popularity_scores reads them.
select extract(epoch from pyembed.setting('popularity_half_life',
                                          pyembed.setting('half_life', '90 days'))::interval)
