"""End-to-end tests: each runs an entry point to the end, through `python -m lft.<entry>` in a subprocess or its
function (train(), evaluate(), generate(), export()) on tiny models, and checks what the run wrote or refused."""
