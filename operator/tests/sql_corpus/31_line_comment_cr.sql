-- A line comment ends at CR as well as at LF: this one ends hereCREATE TABLE after_cr_comment (id int);
