-- Dollar tags with digits and underscores after the first character.
CREATE FUNCTION tagged() RETURNS text LANGUAGE sql AS $tag_1$ SELECT '$$;' $tag_1$;
CREATE TABLE after_tagged (id int);
