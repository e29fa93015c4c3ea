drop table if exists pyembed.installation;
