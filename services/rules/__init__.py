"""Pure domain rules shared by the card stack and the twin (standard library only): the
twin's model and a hospital's services follow the same rule, so what the twin predicts
is what the hospital runs."""
