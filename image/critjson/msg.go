package critjson

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/opts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// UnknownKey is the JSON key under which protobuf fields unknown to criukit's message
// definitions are kept (base64 of their wire bytes). crit drops such fields; its encoder
// ignores this key.
const UnknownKey = "_unknown"

type fieldInfo struct {
	fd       protoreflect.FieldDescriptor
	name     string
	quoted   string // `"name": `
	hex      bool
	ipadd    bool
	dev      bool
	odev     bool
	flags    []flagBit
	hasFlags bool // (criu).flags set; flags nil means "unknown table: hex"
	dict     map[int64]string
	unixName bool
}

type msgInfo struct {
	fields []*fieldInfo // by field number
	byName map[string]*fieldInfo
}

var infoCache sync.Map // protoreflect.MessageDescriptor -> *msgInfo

func infoOf(md protoreflect.MessageDescriptor) *msgInfo {
	if v, ok := infoCache.Load(md); ok {
		return v.(*msgInfo)
	}
	mi := &msgInfo{byName: map[string]*fieldInfo{}}
	fds := md.Fields()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		fi := &fieldInfo{fd: fd, name: string(fd.Name())}
		qw := &writer{}
		qw.str(fi.name)
		fi.quoted = string(qw.buf) + ": "
		if co, _ := proto.GetExtension(fd.Options(), opts.E_Criu).(*opts.CRIU_Opts); co != nil {
			fi.hex = co.GetHex()
			fi.ipadd = co.GetIpadd()
			fi.dev = co.GetDev()
			fi.odev = co.GetOdev()
			if f := co.GetFlags(); f != "" {
				fi.hasFlags = true
				fi.flags = flagTables[f]
			}
			if d := co.GetDict(); d != "" {
				fi.dict = dictTables[d][fi.name]
			}
			fi.unixName = co.GetConv() == "unix_name"
		}
		mi.fields = append(mi.fields, fi)
		mi.byName[fi.name] = fi
	}
	sort.Slice(mi.fields, func(a, b int) bool { return mi.fields[a].fd.Number() < mi.fields[b].fd.Number() })
	v, _ := infoCache.LoadOrStore(md, mi)
	return v.(*msgInfo)
}

// encodeBytes is Python's base64.encodebytes: lines of 76 characters, each ending in "\n".
func encodeBytes(w *writer, b []byte) {
	w.buf = append(w.buf, '"')
	for len(b) > 0 {
		n := min(len(b), 57)
		w.buf = base64.StdEncoding.AppendEncode(w.buf, b[:n])
		w.buf = append(w.buf, `\n`...)
		b = b[n:]
	}
	w.buf = append(w.buf, '"')
}

// decodeBytes is lenient like Python's base64.decodebytes: characters outside the alphabet
// (newlines, spaces) are ignored.
func decodeBytes(s string) ([]byte, error) {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
			clean = append(clean, c)
		}
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(out, clean)
	if err != nil {
		str := strings.TrimRight(string(clean), "=")
		out, err2 := base64.RawStdEncoding.DecodeString(str)
		if err2 != nil {
			return nil, fmt.Errorf("bad base64: %v", err)
		}
		return out, nil
	}
	return out[:n], nil
}

// message writes m as a JSON object like pb2dict. hex is inherited from a (criu).hex parent.
func (w *writer) message(m protoreflect.Message, hex bool, extra func(w *writer, i int) int) {
	mi := infoOf(m.Descriptor())
	w.open('{')
	i := 0
	for _, fi := range mi.fields {
		if !m.Has(fi.fd) {
			continue
		}
		w.sep(i)
		w.buf = append(w.buf, fi.quoted...)
		i++
		h := hex || fi.hex
		v := m.Get(fi.fd)
		if fi.fd.IsList() {
			l := v.List()
			if w.pretty && fi.ipadd && (l.Len() == 1 || l.Len() == 4) {
				w.open('[')
				w.sep(0)
				w.str(formatIP(l))
				w.close(']', false)
				continue
			}
			w.open('[')
			for j := 0; j < l.Len(); j++ {
				w.sep(j)
				w.scalar(fi, l.Get(j), h)
			}
			w.close(']', l.Len() == 0)
			continue
		}
		w.scalar(fi, v, h)
	}
	if u := m.GetUnknown(); len(u) > 0 {
		w.key(i, UnknownKey)
		i++
		encodeBytes(w, u)
	}
	if extra != nil {
		i = extra(w, i)
	}
	w.close('}', i == 0)
}

func (w *writer) scalar(fi *fieldInfo, v protoreflect.Value, hex bool) {
	switch fi.fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		w.message(v.Message(), hex, nil)
	case protoreflect.BytesKind:
		if fi.unixName {
			w.str(qpEncode(v.Bytes()))
		} else {
			encodeBytes(w, v.Bytes())
		}
	case protoreflect.StringKind:
		w.str(v.String())
	case protoreflect.BoolKind:
		w.bool(v.Bool())
	case protoreflect.EnumKind:
		if ev := fi.fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			w.str(string(ev.Name()))
		} else {
			w.int(int64(v.Enum())) // crit crashes here; we keep the number
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n := v.Int()
		if w.pretty && n >= 0 && (hex || fi.dev || fi.hasFlags || fi.dict != nil) {
			w.prettyInt(fi, uint64(n), hex)
			return
		}
		if w.pretty && n < 0 && hex {
			w.str("-0x" + string(appendHex(nil, uint64(-n))))
			return
		}
		if w.pretty && n < 0 && fi.dict != nil {
			if s, ok := fi.dict[n]; ok {
				w.str(s)
				return
			}
		}
		w.int(n)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n := v.Uint()
		if w.pretty && (hex || fi.dev || fi.hasFlags || fi.dict != nil) {
			w.prettyInt(fi, n, hex)
			return
		}
		w.uint(n)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		w.buf = strconv.AppendFloat(w.buf, v.Float(), 'g', -1, 64)
	default:
		w.buf = append(w.buf, "null"...)
	}
}

func (w *writer) prettyInt(fi *fieldInfo, n uint64, hex bool) {
	switch {
	case hex:
		w.str("0x" + string(appendHex(nil, n)))
	case fi.dev:
		var ma, mi uint64
		if fi.odev {
			ma = (n>>8)&0xfff | (n>>32)&^0xfff
			mi = n&0xff | (n>>12)&^0xff
		} else {
			ma, mi = n>>20, n&(1<<20-1)
		}
		w.str(strconv.FormatUint(ma, 10) + ":" + strconv.FormatUint(mi, 10))
	case fi.hasFlags:
		if fi.flags == nil {
			w.str("0x" + string(appendHex(nil, n)))
		} else {
			w.str(mapFlags(n, fi.flags))
		}
	case fi.dict != nil:
		if n <= math.MaxInt64 {
			if s, ok := fi.dict[int64(n)]; ok {
				w.str(s)
				return
			}
		}
		w.uint(n)
	default:
		w.uint(n)
	}
}

// formatIP renders 1 (IPv4) or 4 (IPv6) uint32 words in network order like Python's ipaddress.
func formatIP(l protoreflect.List) string {
	var b [16]byte
	for j := 0; j < l.Len(); j++ {
		binary.LittleEndian.PutUint32(b[4*j:], uint32(l.Get(j).Uint()))
	}
	if l.Len() == 1 {
		return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3])
	}
	var h [8]uint16
	for j := range h {
		h[j] = binary.BigEndian.Uint16(b[2*j:])
	}
	// longest run of zero hextets (first one wins), compressed only if longer than 1
	best, bestLen := -1, 0
	for j := 0; j < 8; {
		if h[j] != 0 {
			j++
			continue
		}
		k := j
		for k < 8 && h[k] == 0 {
			k++
		}
		if k-j > bestLen {
			best, bestLen = j, k-j
		}
		j = k
	}
	var sb strings.Builder
	for j := 0; j < 8; j++ {
		if bestLen > 1 && j == best {
			sb.WriteString("::")
			j += bestLen - 1
			continue
		}
		if j > 0 && !(bestLen > 1 && j == best+bestLen) {
			sb.WriteByte(':')
		}
		sb.WriteString(strconv.FormatUint(uint64(h[j]), 16))
	}
	return sb.String()
}
