package critjson

import (
	"strconv"
	"unicode/utf8"
)

// writer produces JSON text exactly like Python's json.dump with ensure_ascii=True:
// ", " and ": " separators when compact, "," plus newline and 4-space indentation when pretty.
type writer struct {
	buf    []byte
	pretty bool
	depth  int
}

const hexDigits = "0123456789abcdef"

func (w *writer) newline() {
	w.buf = append(w.buf, '\n')
	for i := 0; i < w.depth; i++ {
		w.buf = append(w.buf, "    "...)
	}
}

// open starts an object or array ('{' or '[').
func (w *writer) open(c byte) {
	w.buf = append(w.buf, c)
	w.depth++
}

// close ends an object or array; empty tells whether it had no element.
func (w *writer) close(c byte, empty bool) {
	w.depth--
	if w.pretty && !empty {
		w.newline()
	}
	w.buf = append(w.buf, c)
}

// sep is called before every element; i is the element's index.
func (w *writer) sep(i int) {
	if i > 0 {
		if w.pretty {
			w.buf = append(w.buf, ',')
		} else {
			w.buf = append(w.buf, ", "...)
		}
	}
	if w.pretty {
		w.newline()
	}
}

// key writes element separator, the quoted key and ": ".
func (w *writer) key(i int, k string) {
	w.sep(i)
	w.str(k)
	w.buf = append(w.buf, ": "...)
}

func (w *writer) int(v int64)   { w.buf = strconv.AppendInt(w.buf, v, 10) }
func (w *writer) uint(v uint64) { w.buf = strconv.AppendUint(w.buf, v, 10) }
func (w *writer) bool(v bool)   { w.buf = strconv.AppendBool(w.buf, v) }

// str writes s as a JSON string. Non-ASCII is escaped as \uXXXX (surrogate pairs above the BMP)
// like Python's ensure_ascii; bytes that are not valid UTF-8 are written as lone surrogates
// \udc80-\udcff (Python's "surrogateescape"), which the parser turns back into the same bytes.
func (w *writer) str(s string) {
	w.buf = append(w.buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			j := i + 1
			for j < len(s) && s[j] >= 0x20 && s[j] < 0x7f && s[j] != '"' && s[j] != '\\' {
				j++
			}
			w.buf = append(w.buf, s[i:j]...)
			i = j
			continue
		}
		switch c {
		case '"':
			w.buf = append(w.buf, `\"`...)
			i++
			continue
		case '\\':
			w.buf = append(w.buf, `\\`...)
			i++
			continue
		case '\n':
			w.buf = append(w.buf, `\n`...)
			i++
			continue
		case '\r':
			w.buf = append(w.buf, `\r`...)
			i++
			continue
		case '\t':
			w.buf = append(w.buf, `\t`...)
			i++
			continue
		case '\b':
			w.buf = append(w.buf, `\b`...)
			i++
			continue
		case '\f':
			w.buf = append(w.buf, `\f`...)
			i++
			continue
		}
		if c < 0x80 {
			w.u16(uint16(c))
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			w.u16(0xdc00 | uint16(c))
			i++
			continue
		}
		if r >= 0x10000 {
			r -= 0x10000
			w.u16(0xd800 | uint16(r>>10))
			w.u16(0xdc00 | uint16(r&0x3ff))
		} else {
			w.u16(uint16(r))
		}
		i += n
	}
	w.buf = append(w.buf, '"')
}

func (w *writer) u16(v uint16) {
	w.buf = append(w.buf, '\\', 'u', hexDigits[v>>12], hexDigits[v>>8&0xf], hexDigits[v>>4&0xf], hexDigits[v&0xf])
}
