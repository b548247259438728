package config

import (
	"strings"
)

// The TOML decoder does not tell where a key is, so lines finds it by scanning
// the text. It understands what configuration files normally hold: table and
// array-of-table headers, bare or simply quoted keys, comments and multi-line
// strings. Anything it does not find has line 0, which Error leaves out.

// spot names a key (or, with key "", a table header) in the file. index is the
// 1-based number of the array table ([[link]], [[tenant]]) for such a
// section, and 0 otherwise.
type spot struct {
	section string
	index   int
	key     string
}

type lines map[spot]int

// line is the line of key in the table, or of the table's header if the key is
// not there (a missing required field is reported at the header).
func (ls lines) line(section string, index int, key string) int {
	if n, ok := ls[spot{section, index, key}]; ok {
		return n
	}
	return ls[spot{section, index, ""}]
}

func indexLines(data []byte) lines {
	ls := lines{}
	add := func(s spot, n int) {
		if _, ok := ls[s]; !ok {
			ls[s] = n
		}
	}
	section, index := "", 0
	counts := map[string]int{} // [[name]] tables seen so far, by name
	inString := ""             // closing delimiter of an open multi-line string
	for i, text := range strings.Split(string(data), "\n") {
		n := i + 1
		t := strings.TrimSpace(text)
		if inString != "" {
			if strings.Contains(t, inString) {
				inString = ""
			}
			continue
		}
		switch {
		case t == "" || t[0] == '#':
		case strings.HasPrefix(t, "[["):
			section = headerName(t[2:], "]]")
			counts[section]++
			index = counts[section]
			add(spot{section, index, ""}, n)
		case t[0] == '[':
			section = headerName(t[1:], "]")
			parts := strings.SplitN(section, ".", 2)
			index = counts[parts[0]] // [link.tls] belongs to the current [[link]]
			add(spot{section, index, ""}, n)
			add(spot{"", 0, parts[0]}, n)
			if len(parts) == 2 { // [link.tls] is the field "tls" of the current link
				add(spot{parts[0], index, unquote(strings.SplitN(parts[1], ".", 2)[0])}, n)
			}
		default:
			key, value, ok := strings.Cut(t, "=")
			if !ok || !isKeyStart(t[0]) {
				continue
			}
			key = strings.TrimSpace(key)
			if k, _, dotted := strings.Cut(key, "."); dotted && !strings.ContainsAny(key, `"'`) {
				key = k
			}
			add(spot{section, index, unquote(key)}, n)
			value = strings.TrimSpace(value)
			for _, q := range []string{`"""`, `'''`} {
				if strings.HasPrefix(value, q) && strings.Count(value, q) == 1 {
					inString = q
				}
			}
		}
	}
	return ls
}

// headerName is the name in "link]] # comment" (end "]]") or "service]".
func headerName(s, end string) string {
	name, _, _ := strings.Cut(s, end)
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = unquote(strings.TrimSpace(p))
	}
	return strings.Join(parts, ".")
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

func isKeyStart(c byte) bool {
	return c == '_' || c == '-' || c == '"' || c == '\'' ||
		'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
