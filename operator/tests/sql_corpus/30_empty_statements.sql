-- Empty statements between semicolons.
;;
CREATE TABLE after_empties (id int);;
;
