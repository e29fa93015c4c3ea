-- The popularity half-life (seconds; 0 = none) when the operator set one, else null.
select extract(epoch from pyembed.setting_interval('popularity_half_life', null))
