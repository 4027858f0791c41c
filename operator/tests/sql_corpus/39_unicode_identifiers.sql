-- Non-ASCII identifiers and strings.
CREATE TABLE café (naïve text DEFAULT 'crème; brûlée', "日本" int);
