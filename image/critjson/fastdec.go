package critjson

import (
	"fmt"
	"math"
	"strconv"

	"github.com/criukit/criukit/image"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var wireUnmarshal = proto.UnmarshalOptions{AllowPartial: true}

// Streaming decoder: fills protobuf messages straight from the JSON text, guided by the message
// descriptors, without building a tree (crit documents start with "magic", so the message type is
// known before the entries). Values it does not handle itself (extras, unusual forms) go through
// the generic parser and the same conversions as the tree decoder, so both accept the same input.

func (p *parser) expect(c byte) error {
	p.ws()
	if p.pos >= len(p.data) || p.data[p.pos] != c {
		if p.pos >= len(p.data) {
			return p.errf("unexpected end of input, want %q", c)
		}
		return p.errf("want %q, got %q", c, p.data[p.pos])
	}
	p.pos++
	return nil
}

// peek returns the next non-space byte (0 at the end).
func (p *parser) peek() byte {
	p.ws()
	if p.pos >= len(p.data) {
		return 0
	}
	return p.data[p.pos]
}

// rawKey parses an object key without allocating when it has no escapes.
func (p *parser) rawKey() ([]byte, error) {
	end := p.pos + 1
	for end < len(p.data) && p.data[end] != '"' && p.data[end] != '\\' && p.data[end] >= 0x20 {
		end++
	}
	if end < len(p.data) && p.data[end] == '"' {
		k := p.data[p.pos+1 : end]
		p.pos = end + 1
		return k, nil
	}
	s, err := p.string()
	return []byte(s), err
}

// members calls f for every key of the object at the current position.
func (p *parser) members(f func(k []byte) error) error {
	return p.sequence('{', '}', "object", func(int) error {
		if p.peek() != '"' {
			return p.errf("expected a string key")
		}
		k, err := p.rawKey()
		if err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		return f(k)
	})
}

// elements calls f for every element of the array at the current position.
func (p *parser) elements(f func(i int) error) error {
	return p.sequence('[', ']', "array", f)
}

// sequence reads open, then items separated by ',' (each read by item), then end.
func (p *parser) sequence(open, end byte, what string, item func(i int) error) error {
	if err := p.expect(open); err != nil {
		return err
	}
	if err := p.enter(); err != nil {
		return err
	}
	if p.peek() == end {
		p.pos++
		p.depth--
		return nil
	}
	for i := 0; ; i++ {
		if err := item(i); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.pos++
		case end:
			p.pos++
			p.depth--
			return nil
		default:
			return p.errf("expected ',' or '%c' in %s", end, what)
		}
	}
}

func isIntKind(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}

// scalar reads one scalar value for field fi.
func (p *parser) scalar(fi *fieldInfo) (protoreflect.Value, error) {
	c := p.peek()
	if (c >= '0' && c <= '9' || c == '-') && isIntKind(fi.fd.Kind()) {
		// plain integer literal: convert without boxing
		i, neg := p.pos, c == '-'
		if neg {
			i++
		}
		var u uint64
		digits, ok := 0, true
		for ; i < len(p.data) && p.data[i] >= '0' && p.data[i] <= '9'; i++ {
			d := uint64(p.data[i] - '0')
			if u > (math.MaxUint64-d)/10 {
				ok = false
				break
			}
			u = u*10 + d
			digits++
		}
		if ok && digits > 0 && (digits == 1 || p.data[i-digits] != '0') &&
			(i == len(p.data) || (p.data[i] != '.' && p.data[i] != 'e' && p.data[i] != 'E')) {
			p.pos = i
			return intValue(fi, neg, u)
		}
	}
	if c == '"' && fi.fd.Kind() == protoreflect.StringKind {
		s, err := p.string()
		if err != nil {
			return protoreflect.Value{}, err
		}
		return protoreflect.ValueOfString(s), nil
	}
	v, err := p.value()
	if err != nil {
		return protoreflect.Value{}, err
	}
	return scalarValue(fi, v)
}

// appendWire appends field fd with value v in protobuf wire format.
func appendWire(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	num := fd.Number()
	switch fd.Kind() {
	case protoreflect.BoolKind:
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.Bool()))
	case protoreflect.EnumKind:
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(int64(v.Enum())))
	case protoreflect.Int32Kind, protoreflect.Int64Kind:
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.Int()))
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeZigZag(v.Int()))
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, v.Uint())
	case protoreflect.Fixed32Kind:
		b = protowire.AppendTag(b, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(b, uint32(v.Uint()))
	case protoreflect.Sfixed32Kind:
		b = protowire.AppendTag(b, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(b, uint32(v.Int()))
	case protoreflect.Fixed64Kind:
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, v.Uint())
	case protoreflect.Sfixed64Kind:
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, uint64(v.Int()))
	case protoreflect.FloatKind:
		b = protowire.AppendTag(b, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(b, math.Float32bits(float32(v.Float())))
	case protoreflect.DoubleKind:
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.Float()))
	case protoreflect.StringKind:
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, v.String())
	case protoreflect.BytesKind:
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, v.Bytes())
	}
	return b
}

// transcode converts the object at the current position into the protobuf wire bytes of a
// message of type md, appended to b: proto.Unmarshal of the result is fast, typed code, much
// cheaper than setting fields through reflection. extra, if not nil, receives the keys the caller
// handles ("extra", "_extra_raw") as generic values.
func (p *parser) transcode(b []byte, md protoreflect.MessageDescriptor, extra *object) ([]byte, error) {
	mi := infoOf(md)
	if err := p.expect('{'); err != nil {
		return b, err
	}
	if err := p.enter(); err != nil {
		return b, err
	}
	if p.peek() == '}' {
		p.pos++
		p.depth--
		return b, nil
	}
	for {
		if p.peek() != '"' {
			return b, p.errf("expected a string key")
		}
		kb, err := p.rawKey()
		if err != nil {
			return b, err
		}
		if err := p.expect(':'); err != nil {
			return b, err
		}
		if fi := mi.byName[string(kb)]; fi != nil {
			if b, err = p.field(b, fi); err != nil {
				return b, atPath(fi.name, err)
			}
		} else if b, err = p.otherKey(b, string(kb), md, extra); err != nil {
			return b, err
		}
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
			p.pos++
			p.depth--
			return b, nil
		default:
			return b, p.errf("expected ',' or '}' in object")
		}
	}
}

// otherKey handles a key that is not a field: extras, unknown fields, or an error.
func (p *parser) otherKey(b []byte, k string, md protoreflect.MessageDescriptor, extra *object) ([]byte, error) {
	switch {
	case extra != nil && (k == "extra" || k == ExtraRawKey):
		v, err := p.value()
		if err != nil {
			return b, err
		}
		if *extra == nil {
			*extra = object{}
		}
		(*extra)[k] = v
		return b, nil
	case k == UnknownKey:
		v, err := p.value()
		if err != nil {
			return b, err
		}
		s, ok := v.(string)
		if !ok {
			return b, atPath(k, fmt.Errorf("want a base64 string"))
		}
		u, err := decodeBytes(s)
		if err != nil {
			return b, atPath(k, err)
		}
		if _, _, n := protowire.ConsumeField(u); n < 0 && len(u) > 0 {
			return b, atPath(k, fmt.Errorf("not protobuf wire data"))
		}
		return append(b, u...), nil
	}
	return b, fmt.Errorf("unknown field %q for message %s", k, md.FullName())
}

// message transcodes a nested message as a length-delimited field, in place.
func (p *parser) message(b []byte, fd protoreflect.FieldDescriptor) ([]byte, error) {
	if p.peek() != '{' {
		return b, p.errf("want a JSON object")
	}
	b = protowire.AppendTag(b, fd.Number(), protowire.BytesType)
	at := len(b)
	b = append(b, 0) // length placeholder, widened below when needed
	b, err := p.transcode(b, fd.Message(), nil)
	if err != nil {
		return b, err
	}
	n := len(b) - at - 1
	if sz := protowire.SizeVarint(uint64(n)); sz > 1 {
		b = append(b, make([]byte, sz-1)...)
		copy(b[at+sz:], b[at+1:at+1+n])
	}
	protowire.AppendVarint(b[:at], uint64(n))
	return b, nil
}

// field transcodes the value of field fi at the current position.
func (p *parser) field(b []byte, fi *fieldInfo) ([]byte, error) {
	isMsg := fi.fd.Kind() == protoreflect.MessageKind || fi.fd.Kind() == protoreflect.GroupKind
	if !fi.fd.IsList() {
		if isMsg {
			return p.message(b, fi.fd)
		}
		v, err := p.scalar(fi)
		if err != nil {
			return b, err
		}
		return appendWire(b, fi.fd, v), nil
	}
	if p.peek() != '[' {
		return b, p.errf("want a JSON array")
	}
	if fi.ipadd {
		// crit's pretty form: ["addr"] (only the first string counts); else numbers.
		save := p.pos
		p.pos++
		if p.peek() == '"' {
			p.pos = save
			v, err := p.value()
			if err != nil {
				return b, err
			}
			words, err := parseIP(v.([]any)[0].(string))
			if err != nil {
				return b, err
			}
			for _, w := range words {
				b = appendWire(b, fi.fd, protoreflect.ValueOfUint32(w))
			}
			return b, nil
		}
		p.pos = save
	}
	p.pos++ // '['
	if err := p.enter(); err != nil {
		return b, err
	}
	if p.peek() == ']' {
		p.pos++
		p.depth--
		return b, nil
	}
	for j := 0; ; j++ {
		var err error
		if isMsg {
			b, err = p.message(b, fi.fd)
		} else {
			var v protoreflect.Value
			if v, err = p.scalar(fi); err == nil {
				b = appendWire(b, fi.fd, v)
			}
		}
		if err != nil {
			return b, atPath("["+strconv.Itoa(j)+"]", err)
		}
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.depth--
			return b, nil
		default:
			return b, p.errf("expected ',' or ']' in array")
		}
	}
}

// errNotStreamable makes Unmarshal fall back to the tree decoder.
var errNotStreamable = fmt.Errorf("not streamable")

// unmarshalStream decodes documents whose first key is "magic" (crit's and ours).
func unmarshalStream(data []byte, name string) (*image.Image, error) {
	p := &parser{data: data}
	if p.peek() != '{' {
		return nil, errNotStreamable
	}
	p.pos++
	if p.peek() != '"' {
		return nil, errNotStreamable
	}
	k, err := p.key()
	if err != nil || k != "magic" {
		return nil, errNotStreamable
	}
	if err := p.expect(':'); err != nil {
		return nil, err
	}
	if p.peek() != '"' {
		return nil, errNotStreamable
	}
	magic, err := p.string()
	if err != nil {
		return nil, err
	}
	if magic == RawMagic {
		return nil, errNotStreamable
	}
	d, err := descFor(magic, name)
	if err != nil {
		return nil, err
	}
	img := &image.Image{Name: name, Desc: d, Head: defaultHead(d)}
	p.pos = 0
	p.depth = 0
	seenEntries := false
	err = p.members(func(kb []byte) error {
		switch k := string(kb); k {
		case "entries":
			seenEntries = true
			return p.elements(func(i int) error {
				// The path is built only for errors and extras: it would cost an allocation per entry.
				path := func() string { return "entries[" + strconv.Itoa(i) + "]" }
				if p.peek() != '{' {
					return fmt.Errorf("%s: want an object", path())
				}
				msg := d.MessageFor(i)
				var ex object // allocated only for entries with extras
				wire, err := p.transcode(p.scratch[:0], msg.ProtoReflect().Descriptor(), &ex)
				if err != nil {
					return atPath(path(), err)
				}
				p.scratch = wire
				if err := wireUnmarshal.Unmarshal(wire, msg); err != nil {
					return fmt.Errorf("%s: %v", path(), err)
				}
				e := &image.Entry{Msg: msg}
				if ex != nil { // readExtra does nothing without "extra"/"_extra_raw" keys
					if err := readExtra(d, i, e, ex, path()); err != nil {
						return err
					}
				}
				img.Entries = append(img.Entries, e)
				return nil
			})
		case HeadKey:
			v, err := p.value()
			if err != nil {
				return err
			}
			h, err := parseHead(v)
			if err != nil {
				return err
			}
			img.Head = h
			return nil
		default: // "magic" and keys crit does not know
			_, err := p.value()
			return err
		}
	})
	if err != nil {
		return nil, err
	}
	if p.peek() != 0 {
		return nil, p.errf("trailing data after the JSON document")
	}
	if !seenEntries {
		return nil, fmt.Errorf("%w: no \"entries\" array", ErrFormat)
	}
	return img, nil
}
