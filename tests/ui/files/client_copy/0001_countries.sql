CREATE TABLE IF NOT EXISTS countries (code text PRIMARY KEY, name text);
COPY countries (code, name) FROM stdin;
fr	France
ci	Côte d'Ivoire
\.
