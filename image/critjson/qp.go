package critjson

import "bytes"

// qpEncode is Python's quopri.encodestring (binascii.b2a_qp with quotetabs=False,
// istext=True, header=False), which crit uses for UNIX socket names ((criu).conv = "unix_name").
func qpEncode(d []byte) string {
	s := qpEncodeMode(d, true)
	if !bytes.Equal(qpDecode(s), d) {
		// Text mode turns CR/LF line ends into the platform form (lossy): quote them instead,
		// as binascii.b2a_qp(istext=False) does. Both forms decode the same way.
		s = qpEncodeMode(d, false)
	}
	return s
}

func qpEncodeMode(d []byte, istext bool) string {
	const maxLine = 76
	const hx = "0123456789ABCDEF"
	crlf := false
	if i := bytes.IndexByte(d, '\n'); i > 0 && d[i-1] == '\r' {
		crlf = true
	}
	out := make([]byte, 0, len(d)+len(d)/8+4)
	softBreak := func() {
		out = append(out, '=')
		if crlf {
			out = append(out, '\r')
		}
		out = append(out, '\n')
	}
	line := 0
	for in := 0; in < len(d); {
		c := d[in]
		last := in+1 == len(d)
		if c > 126 || c == '=' ||
			(c == '.' && line == 0 && (last || d[in+1] == '\n' || d[in+1] == '\r' || d[in+1] == 0)) ||
			((c == '\t' || c == ' ') && last) ||
			(!istext && (c == '\r' || c == '\n')) ||
			(c < 33 && c != '\r' && c != '\n' && c != '\t' && c != ' ') {
			if line+3 >= maxLine {
				softBreak()
				line = 0
			}
			out = append(out, '=', hx[c>>4], hx[c&0xf])
			in++
			line += 3
			continue
		}
		if istext && (c == '\n' || (c == '\r' && !last && d[in+1] == '\n')) {
			line = 0
			if n := len(out); n > 0 && (out[n-1] == ' ' || out[n-1] == '\t') {
				ch := out[n-1]
				out[n-1] = '='
				out = append(out, hx[ch>>4], hx[ch&0xf])
			}
			if crlf {
				out = append(out, '\r')
			}
			out = append(out, '\n')
			if c == '\r' {
				in += 2
			} else {
				in++
			}
			continue
		}
		if !last && d[in+1] != '\n' && line+1 >= maxLine {
			softBreak()
			line = 0
		}
		line++
		out = append(out, c)
		in++
	}
	return string(out)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// qpDecode is Python's quopri.decodestring (binascii.a2b_qp, header=False).
func qpDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for in := 0; in < len(s); {
		c := s[in]
		if c != '=' {
			out = append(out, c)
			in++
			continue
		}
		in++
		if in >= len(s) {
			break
		}
		switch {
		case s[in] == '\n' || s[in] == '\r':
			for in < len(s) && s[in] != '\n' {
				in++
			}
			if in < len(s) {
				in++
			}
		case s[in] == '=':
			out = append(out, '=')
			in++
		default:
			if in+1 < len(s) {
				h, ok1 := unhex(s[in])
				l, ok2 := unhex(s[in+1])
				if ok1 && ok2 {
					out = append(out, h<<4|l)
					in += 2
					continue
				}
			}
			out = append(out, '=')
		}
	}
	return out
}

// QuotedPrintable renders b like crit renders UNIX socket names (Python quopri.encodestring).
func QuotedPrintable(b []byte) string { return qpEncode(b) }
