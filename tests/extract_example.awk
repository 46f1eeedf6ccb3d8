# Pulls the worked example out of include/tapegrad.h (the comment block between
# "#include <tapegrad.h>" and the closing brace of main) and prints it as C source.
/^ \*   #include <tapegrad.h>/ { on = 1 }
on { sub(/^ \*   ?/, ""); sub(/^ \*$/, ""); print }
on && /^}$/ { exit }
