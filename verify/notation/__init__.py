"""The notations a statement may be written in besides plain index notation: chains of equalities and
Jacobian targets (`statements`), matrix notation (`matrix`) and LaTeX (`latexin`). Each front-end ends
in the same index-notation Python `ast` the parser walks, so the rest of the tool sees one language."""
