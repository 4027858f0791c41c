/* Block comments nest: /* inner; comment */ this is still a comment;
   COMMIT; */
CREATE TABLE nested_comments (id int /* a; comment */);
