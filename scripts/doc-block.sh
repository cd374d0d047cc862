# Sourced by the benchmark scripts: rewrites the generated part of a document.
#
# replace_block DOC NAME FILE: replaces what lies between `<!-- NAME:begin -->` and
# `<!-- NAME:end -->` in DOC with the contents of FILE, keeping everything around it. The
# markers are appended to DOC first when it lacks them.
replace_block() {
  local doc=$1 name=$2 file=$3 tmp
  if ! grep -qs "<!-- $name:begin -->" "$doc" || ! grep -qs "<!-- $name:end -->" "$doc"; then
    [ -s "$doc" ] && echo >>"$doc"
    printf '<!-- %s:begin -->\n<!-- %s:end -->\n' "$name" "$name" >>"$doc"
  fi
  tmp="$(mktemp)"
  awk -v block="$file" -v begin="<!-- $name:begin -->" -v end="<!-- $name:end -->" '
    $0 == begin { print; while ((getline line < block) > 0) print line; skipping = 1; next }
    $0 == end { skipping = 0 }
    !skipping { print }
  ' "$doc" >"$tmp"
  cp "$tmp" "$doc"
  rm -f "$tmp"
}
