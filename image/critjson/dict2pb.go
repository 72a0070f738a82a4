package critjson

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// fillMessage sets the fields of m from a JSON object like crit's dict2pb, accepting both the
// plain and the --pretty representation. skip names keys handled by the caller (e.g. "extra").
func fillMessage(m protoreflect.Message, obj object, path string, skip ...string) error {
	if err := fill(m, obj, skip); err != nil {
		return atPath(path, err)
	}
	return nil
}

// pathError accumulates the JSON path of an error while it bubbles up.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

// atPath prefixes seg to err's path.
func atPath(seg string, err error) error {
	if pe, ok := err.(*pathError); ok {
		if strings.HasPrefix(pe.path, "[") {
			pe.path = seg + pe.path
		} else {
			pe.path = seg + "." + pe.path
		}
		return pe
	}
	return &pathError{path: seg, err: err}
}

func fill(m protoreflect.Message, obj object, skip []string) error {
	mi := infoOf(m.Descriptor())
keys:
	for k, v := range obj {
		for _, s := range skip {
			if k == s {
				continue keys
			}
		}
		if k == UnknownKey {
			s, ok := v.(string)
			if !ok {
				return atPath(k, fmt.Errorf("want a base64 string"))
			}
			b, err := decodeBytes(s)
			if err != nil {
				return atPath(k, err)
			}
			m.SetUnknown(b)
			continue
		}
		fi := mi.byName[k]
		if fi == nil {
			return fmt.Errorf("unknown field %q for message %s", k, m.Descriptor().FullName())
		}
		if fi.fd.IsList() {
			arr, ok := v.([]any)
			if !ok {
				return atPath(k, fmt.Errorf("want a JSON array, got %s", typeName(v)))
			}
			l := m.Mutable(fi.fd).List()
			if fi.ipadd && len(arr) > 0 {
				if s, ok := arr[0].(string); ok {
					words, err := parseIP(s)
					if err != nil {
						return atPath(k, err)
					}
					for _, wd := range words {
						l.Append(protoreflect.ValueOfUint32(wd))
					}
					continue
				}
			}
			for j, e := range arr {
				if fi.fd.Kind() == protoreflect.MessageKind || fi.fd.Kind() == protoreflect.GroupKind {
					o, ok := e.(object)
					if !ok {
						return atPath(k, atPath("["+strconv.Itoa(j)+"]", fmt.Errorf("want a JSON object, got %s", typeName(e))))
					}
					el := l.NewElement()
					if err := fill(el.Message(), o, nil); err != nil {
						return atPath(k, atPath("["+strconv.Itoa(j)+"]", err))
					}
					l.Append(el)
					continue
				}
				pv, err := scalarValue(fi, e)
				if err != nil {
					return atPath(k, atPath("["+strconv.Itoa(j)+"]", err))
				}
				l.Append(pv)
			}
			continue
		}
		if fi.fd.Kind() == protoreflect.MessageKind || fi.fd.Kind() == protoreflect.GroupKind {
			o, ok := v.(object)
			if !ok {
				return atPath(k, fmt.Errorf("want a JSON object, got %s", typeName(v)))
			}
			sub := m.Mutable(fi.fd).Message() // present even when empty, like SetInParent
			if err := fill(sub, o, nil); err != nil {
				return atPath(k, err)
			}
			continue
		}
		pv, err := scalarValue(fi, v)
		if err != nil {
			return atPath(k, err)
		}
		m.Set(fi.fd, pv)
	}
	return nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case number, unum:
		return "a number"
	case []any:
		return "an array"
	case object:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func scalarValue(fi *fieldInfo, v any) (protoreflect.Value, error) {
	fd := fi.fd
	switch fd.Kind() {
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			return protoreflect.Value{}, fmt.Errorf("want a string, got %s", typeName(v))
		}
		if fi.unixName {
			return protoreflect.ValueOfBytes(qpDecode(s)), nil
		}
		b, err := decodeBytes(s)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%v", err)
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.StringKind:
		s, ok := v.(string)
		if !ok {
			return protoreflect.Value{}, fmt.Errorf("want a string, got %s", typeName(v))
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BoolKind:
		b, ok := v.(bool)
		if !ok {
			return protoreflect.Value{}, fmt.Errorf("want true or false, got %s", typeName(v))
		}
		return protoreflect.ValueOfBool(b), nil
	case protoreflect.EnumKind:
		switch x := v.(type) {
		case string:
			ev := fd.Enum().Values().ByName(protoreflect.Name(x))
			if ev == nil {
				return protoreflect.Value{}, fmt.Errorf("%q is not a value of enum %s", x, fd.Enum().FullName())
			}
			return protoreflect.ValueOfEnum(ev.Number()), nil
		case number, unum:
			t, _ := numText(x)
			n, err := strconv.ParseInt(t, 10, 32)
			if err != nil {
				return protoreflect.Value{}, fmt.Errorf("bad enum number %s", x)
			}
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
		}
		return protoreflect.Value{}, fmt.Errorf("want an enum name, got %s", typeName(v))
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		x, ok := numText(v)
		if !ok {
			return protoreflect.Value{}, fmt.Errorf("want a number, got %s", typeName(v))
		}
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%v", err)
		}
		if fd.Kind() == protoreflect.FloatKind {
			return protoreflect.ValueOfFloat32(float32(f)), nil
		}
		return protoreflect.ValueOfFloat64(f), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return protoreflect.Value{}, fmt.Errorf("nested message in a scalar position")
	}
	// integers
	var neg bool
	var mag uint64
	switch x := v.(type) {
	case unum:
		mag = uint64(x)
	case number:
		s := string(x)
		if strings.ContainsAny(s, ".eE") {
			return protoreflect.Value{}, fmt.Errorf("%s is not an integer", s)
		}
		neg = strings.HasPrefix(s, "-")
		u, err := strconv.ParseUint(strings.TrimPrefix(s, "-"), 10, 64)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%s out of range", s)
		}
		mag = u
	case string:
		var err error
		neg, mag, err = intFromString(fi, x)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%v", err)
		}
	default:
		return protoreflect.Value{}, fmt.Errorf("want an integer, got %s", typeName(v))
	}
	return intValue(fi, neg, mag)
}

// intValue range-checks an integer for field fi.
func intValue(fi *fieldInfo, neg bool, mag uint64) (protoreflect.Value, error) {
	signed := false
	bits := 64
	switch fi.fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		signed, bits = true, 32
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		signed = true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		bits = 32
	}
	if neg && mag != 0 {
		if !signed {
			return protoreflect.Value{}, fmt.Errorf("negative value for unsigned field")
		}
		lim := uint64(1) << (bits - 1)
		if mag > lim {
			return protoreflect.Value{}, fmt.Errorf("value out of range for int%d", bits)
		}
		n := int64(-mag)
		if bits == 32 {
			return protoreflect.ValueOfInt32(int32(n)), nil
		}
		return protoreflect.ValueOfInt64(n), nil
	}
	if signed {
		if mag > uint64(1)<<(bits-1)-1 {
			return protoreflect.Value{}, fmt.Errorf("value out of range for int%d", bits)
		}
		if bits == 32 {
			return protoreflect.ValueOfInt32(int32(mag)), nil
		}
		return protoreflect.ValueOfInt64(int64(mag)), nil
	}
	if bits == 32 {
		if mag > math.MaxUint32 {
			return protoreflect.Value{}, fmt.Errorf("value out of range for uint32")
		}
		return protoreflect.ValueOfUint32(uint32(mag)), nil
	}
	return protoreflect.ValueOfUint64(mag), nil
}

// intFromString reverses the --pretty forms: devices "ma:mi", flag lists "A | B | 0x10",
// dict names, and Python int(x, 0) literals ("0x1f", "17", "-0x5").
func intFromString(fi *fieldInfo, s string) (neg bool, mag uint64, err error) {
	switch {
	case fi.dev:
		ma, mi, ok := strings.Cut(s, ":")
		if !ok {
			return false, 0, fmt.Errorf("device %q: want major:minor", s)
		}
		a, err1 := strconv.ParseUint(strings.TrimSpace(ma), 10, 32)
		b, err2 := strconv.ParseUint(strings.TrimSpace(mi), 10, 32)
		if err1 != nil || err2 != nil {
			return false, 0, fmt.Errorf("device %q: want major:minor", s)
		}
		if fi.odev {
			return false, b&0xff | (a&0xfff)<<8 | (b&^0xff)<<12 | (a&^0xfff)<<32, nil
		}
		return false, a<<20 | b, nil
	case fi.hasFlags && fi.flags != nil:
		if s == "" {
			return false, 0, nil
		}
		var v uint64
		for _, part := range strings.Split(s, "|") {
			part = strings.TrimSpace(part)
			found := false
			for _, f := range fi.flags {
				if f.name == part {
					v += f.bit
					found = true
					break
				}
			}
			if !found {
				n, _, err := pyInt(part)
				if err != nil {
					return false, 0, fmt.Errorf("flag %q: not a known name nor a number", part)
				}
				v += n
			}
		}
		return false, v, nil
	case fi.dict != nil:
		for n, name := range fi.dict {
			if name == s {
				if n < 0 {
					return true, uint64(-n), nil
				}
				return false, uint64(n), nil
			}
		}
	}
	mag, neg, err = pyInt(s)
	return neg, mag, err
}

// pyInt parses like Python's int(s, 0): optional sign, 0x/0o/0b prefixes, underscores.
func pyInt(s string) (uint64, bool, error) {
	t := strings.TrimSpace(s)
	neg := false
	if strings.HasPrefix(t, "-") {
		neg, t = true, t[1:]
	} else if strings.HasPrefix(t, "+") {
		t = t[1:]
	}
	base := 10
	if len(t) > 2 && t[0] == '0' {
		switch t[1] {
		case 'x', 'X':
			base, t = 16, t[2:]
		case 'o', 'O':
			base, t = 8, t[2:]
		case 'b', 'B':
			base, t = 2, t[2:]
		}
	}
	t = strings.ReplaceAll(t, "_", "")
	u, err := strconv.ParseUint(t, base, 64)
	if err != nil || t == "" {
		return 0, false, fmt.Errorf("%q is not an integer", s)
	}
	return u, neg, nil
}

// parseIP turns an address string into the uint32 words CRIU stores (network byte order).
func parseIP(s string) ([]uint32, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, fmt.Errorf("bad IP address %q", s)
	}
	if a.Is4() {
		b := a.As4()
		return []uint32{binary.LittleEndian.Uint32(b[:])}, nil
	}
	b := a.As16()
	out := make([]uint32, 4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out, nil
}
