drop schema if exists pyembed cascade;
