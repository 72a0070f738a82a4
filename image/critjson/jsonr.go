package critjson

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// number is a JSON number kept as its literal text, so 64-bit integers stay exact.
type number string

// object is a parsed JSON object; key order is not kept (crit does not depend on it).
type object map[string]any

// ErrSyntax is wrapped by every JSON syntax error.
var ErrSyntax = errors.New("invalid JSON")

const maxDepth = 512

type parser struct {
	data    []byte
	pos     int
	depth   int
	keys    map[string]string // interned object keys
	scratch []byte            // reused wire buffer of the streaming decoder
}

// parseJSON parses one JSON document. Values are nil, bool, string, number, []any or object.
// Strings may carry \udc80-\udcff escapes, which stand for the raw bytes 0x80-0xff.
func parseJSON(data []byte) (any, error) {
	p := &parser{data: data}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.pos != len(p.data) {
		return nil, p.errf("trailing data after the JSON document")
	}
	return v, nil
}

func (p *parser) errf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrSyntax, p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value() (any, error) {
	p.ws()
	if p.pos >= len(p.data) {
		return nil, p.errf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.string()
	case c == 't':
		return true, p.lit("true")
	case c == 'f':
		return false, p.lit("false")
	case c == 'n':
		return nil, p.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return nil, p.errf("unexpected character %q", c)
	}
}

func (p *parser) lit(s string) error {
	if len(p.data)-p.pos < len(s) || string(p.data[p.pos:p.pos+len(s)]) != s {
		return p.errf("invalid literal")
	}
	p.pos += len(s)
	return nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errf("nesting deeper than %d", maxDepth)
	}
	return nil
}

func (p *parser) object() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // {
	obj := object{}
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return obj, nil
	}
	for {
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errf("expected a string key")
		}
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errf("expected ':' after key %q", k)
		}
		p.pos++
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		obj[k] = v
		p.ws()
		if p.pos >= len(p.data) {
			return nil, p.errf("unterminated object")
		}
		if p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.data[p.pos] == '}' {
			p.pos++
			p.depth--
			return obj, nil
		}
		return nil, p.errf("expected ',' or '}' in object")
	}
}

func (p *parser) array() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // [
	arr := []any{}
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		return arr, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		p.ws()
		if p.pos >= len(p.data) {
			return nil, p.errf("unterminated array")
		}
		if p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.data[p.pos] == ']' {
			p.pos++
			p.depth--
			return arr, nil
		}
		return nil, p.errf("expected ',' or ']' in array")
	}
}

func (p *parser) number() (any, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return nil, p.errf("invalid number")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return nil, p.errf("invalid number")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, p.errf("invalid number")
		}
	}
	lit := p.data[start:p.pos]
	if lit[0] != '-' && len(lit) <= 20 {
		var u uint64
		ok := true
		for _, c := range lit {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			d := uint64(c - '0')
			if u > (math.MaxUint64-d)/10 {
				ok = false
				break
			}
			u = u*10 + d
		}
		if ok {
			return unum(u), nil
		}
	}
	return number(lit), nil
}

// unum is a non-negative JSON integer that fits 64 bits (the common case, parsed at once).
type unum uint64

// numText returns the literal of a JSON number value.
func numText(v any) (string, bool) {
	switch x := v.(type) {
	case number:
		return string(x), true
	case unum:
		return strconv.FormatUint(uint64(x), 10), true
	}
	return "", false
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(v), err == nil
}

// key parses an object key, interning it: documents repeat the same few keys many times.
func (p *parser) key() (string, error) {
	end := p.pos + 1
	for end < len(p.data) && p.data[end] != '"' && p.data[end] != '\\' && p.data[end] >= 0x20 {
		end++
	}
	if end >= len(p.data) || p.data[end] != '"' {
		return p.string()
	}
	raw := p.data[p.pos+1 : end]
	switch string(raw) { // the top-level keys: no map (a map per document costs more than the parse)
	case "magic":
		p.pos = end + 1
		return "magic", nil
	case "entries":
		p.pos = end + 1
		return "entries", nil
	}
	if k, ok := p.keys[string(raw)]; ok {
		p.pos = end + 1
		return k, nil
	}
	k := string(raw)
	if p.keys == nil {
		p.keys = map[string]string{}
	}
	p.keys[k] = k
	p.pos = end + 1
	return k, nil
}

func (p *parser) string() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.pos++
	}
	buf := append([]byte(nil), p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c < 0x20:
			return "", p.errf("control character in string")
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		p.pos++
		if p.pos >= len(p.data) {
			break
		}
		e := p.data[p.pos]
		p.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := hex4(p.data[p.pos:])
			if !ok {
				return "", p.errf("invalid \\u escape")
			}
			p.pos += 4
			switch {
			case r >= 0xd800 && r < 0xdc00:
				// high surrogate: needs a low one
				if len(p.data)-p.pos >= 6 && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
					if lo, ok := hex4(p.data[p.pos+2:]); ok && lo >= 0xdc00 && lo < 0xe000 {
						p.pos += 6
						buf = utf8.AppendRune(buf, 0x10000+(r-0xd800)<<10+(lo-0xdc00))
						continue
					}
				}
				return "", p.errf("lone high surrogate \\u%04x", r)
			case r >= 0xdc80 && r <= 0xdcff:
				buf = append(buf, byte(r)) // surrogateescape: raw byte
			case r >= 0xdc00 && r < 0xe000:
				return "", p.errf("lone low surrogate \\u%04x", r)
			default:
				buf = utf8.AppendRune(buf, r)
			}
		default:
			return "", p.errf("invalid escape \\%c", e)
		}
	}
	return "", p.errf("unterminated string")
}
