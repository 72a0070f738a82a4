package pseudo

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
)

// Category separates independent pseudonym spaces: a token is injective inside one category.
type Category string

// Categories used by criukit anonymize.
const (
	CatPath   Category = "path"   // one path component
	CatName   Category = "name"   // free-form names: comm, memfd, bpf maps, cgroup dirs, ifnames, abstract sockets
	CatHost   Category = "host"   // one host/domain label
	CatEnv    Category = "env"    // environment values
	CatArg    Category = "arg"    // command line arguments
	CatSecret Category = "secret" // --secret words
	CatText   Category = "text"   // comments and other free text
	CatIP     Category = "ip"
	CatMAC    Category = "mac"
	CatUID    Category = "uid"
)

// ErrKey reports an unusable key file.
var ErrKey = errors.New("pseudo: bad key")

// KeySize is the length of a report key in bytes.
const KeySize = 32

// NewKey returns a random report key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return k
}

// LoadKey reads a key file: any file of at least 16 bytes; its SHA-256 is the key, so a
// passphrase file works as well as random bytes.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if len(b) < 16 {
		return nil, fmt.Errorf("%w: %s has %d bytes, need at least 16 (e.g. head -c32 /dev/urandom > %s)", ErrKey, path, len(b), path)
	}
	s := sha256.Sum256(b)
	return s[:], nil
}

// Mapper hands out pseudonyms. It is safe for concurrent use.
type Mapper struct {
	key  []byte
	mu   sync.Mutex
	fwd  map[Category]map[string]string
	rev  map[Category]map[string]string
	keep map[string]bool
	// shared: one token per value for every text category (a hostname in utsns, memory and
	// logs, a cgroup dir in cgroup.img and in /sys/fs/cgroup paths map alike); the per-category
	// maps only record where a value was seen (for --map-out and counts).
	shared  map[string]string
	sharedR map[string]string
	// public, when set, says a value is public vocabulary (a distro path component, a program
	// name that is also a system path component): it maps to itself in every text category
	// except CatSecret. See anonymize's policy.
	public func(string) bool
	ips    *ipMapper
	uids   map[uint32]uint32
	ruid   map[uint32]uint32
	macs   map[string]string // text forms
}

// New returns a mapper for a key (see NewKey, LoadKey).
func New(key []byte) *Mapper {
	return &Mapper{
		key:     append([]byte(nil), key...),
		fwd:     map[Category]map[string]string{},
		rev:     map[Category]map[string]string{},
		keep:    map[string]bool{},
		shared:  map[string]string{},
		sharedR: map[string]string{},
		ips:     newIPMapper(key),
		uids:    map[uint32]uint32{},
		ruid:    map[uint32]uint32{},
		macs:    map[string]string{},
	}
}

// Keep pins a value: it maps to itself in every category.
func (m *Mapper) Keep(v string) {
	m.mu.Lock()
	m.keep[v] = true
	m.mu.Unlock()
}

// SetPublic installs the public-vocabulary predicate (see the public field).
func (m *Mapper) SetPublic(f func(string) bool) {
	m.mu.Lock()
	m.public = f
	m.mu.Unlock()
}

// IsPublic reports whether v is public vocabulary (never for secrets).
func (m *Mapper) IsPublic(v string) bool {
	m.mu.Lock()
	f := m.public
	m.mu.Unlock()
	return f != nil && f(v)
}

// Kept reports whether v was pinned with Keep.
func (m *Mapper) Kept(v string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.keep[v]
}

func (m *Mapper) mac(parts ...[]byte) []byte {
	h := hmac.New(sha256.New, m.key)
	for _, p := range parts {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(p)))
		h.Write(l[:])
		h.Write(p)
	}
	return h.Sum(nil)
}

// tokenAlphabet avoids characters that are special in paths, logs, shells and CRIU suffixes.
const tokenAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"

// candidate builds the try-th candidate token of length n for value v.
func (m *Mapper) candidate(cat Category, v string, n, try int) string {
	var out []byte
	for blk := 0; len(out) < n; blk++ {
		var t [8]byte
		binary.BigEndian.PutUint32(t[:4], uint32(try))
		binary.BigEndian.PutUint32(t[4:], uint32(blk))
		for _, c := range m.mac([]byte(cat), []byte(v), t[:]) {
			if len(out) == n {
				break
			}
			out = append(out, tokenAlphabet[c%32])
		}
	}
	return string(out)
}

// Token returns the same-length pseudonym of v in cat. Values of length 0 map to themselves.
// Injective per category: a collision is resolved by trying the next candidate; when the
// space of that length is exhausted (only for 1-2 byte values) the value is kept (ok=false).
func (m *Mapper) Token(cat Category, v string) string {
	t, _ := m.token(cat, v)
	return t
}

func (m *Mapper) token(cat Category, v string) (string, bool) {
	if v == "" {
		return v, false
	}
	pub := m.public
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keep[v] && cat != CatSecret {
		return v, false
	}
	f := m.fwd[cat]
	if f == nil {
		f = map[string]string{}
		m.fwd[cat] = f
		m.rev[cat] = map[string]string{}
	}
	if t, ok := f[v]; ok {
		return t, t != v
	}
	if t, ok := m.shared[v]; ok && (t != v || cat != CatSecret) {
		f[v] = t
		return t, t != v
	}
	if cat != CatSecret && pub != nil {
		m.mu.Unlock()
		isPub := pub(v)
		m.mu.Lock()
		if isPub {
			f[v] = v
			return v, false
		}
	}
	r := m.sharedR
	set := func(t string) {
		f[v], r[t], m.shared[v] = t, v, t
		m.rev[cat][t] = v
	}
	for try := 0; try < 64; try++ {
		t := m.candidate("text", v, len(v), try)
		if t == v || m.keep[t] {
			continue
		}
		if _, used := r[t]; used {
			continue
		}
		set(t)
		return t, true
	}
	// tiny values only: enumerate printable strings of that length
	for t := range enumerate(len(v)) {
		if _, used := r[t]; !used && t != v {
			set(t)
			return t, true
		}
	}
	f[v] = v // the space is exhausted; cannot happen for len(v) > 1 with fewer than ~8000 values
	return v, false
}

// Digits returns a same-length all-digit pseudonym of an all-digit value (card numbers, ids,
// numeric env values): injective, keyed, never the value itself nor another mapped value.
// Numbers under DigitsMin digits (pids, ports, counts) are kept: a short digit token would
// collide with other numbers of the dump.
func (m *Mapper) Digits(v string) string {
	if len(v) < DigitsMin {
		return v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keep[v] {
		return v
	}
	if t, ok := m.shared[v]; ok {
		return t
	}
	f := m.fwd[CatText]
	if f == nil {
		f = map[string]string{}
		m.fwd[CatText] = f
		m.rev[CatText] = map[string]string{}
	}
	for try := 0; ; try++ {
		var t [4]byte
		binary.BigEndian.PutUint32(t[:], uint32(try))
		h := m.mac([]byte("digits"), []byte(v), t[:])
		out := make([]byte, len(v))
		for i := range out {
			out[i] = '0' + h[i%len(h)]%10
			if i >= len(h) {
				out[i] = '0' + (h[i%len(h)]/10+byte(i))%10
			}
		}
		if v[0] != '0' && out[0] == '0' {
			out[0] = '1' + h[0]%9 // keep a number a number (no leading zero added)
		}
		ts := string(out)
		_, used := m.sharedR[ts]
		_, orig := m.shared[ts]
		if used || orig || ts == v {
			continue
		}
		f[v], m.shared[v], m.sharedR[ts] = ts, ts, v
		return ts
	}
}

// DigitsMin is the shortest number Digits maps.
const DigitsMin = 6

func enumerate(n int) func(func(string) bool) {
	return func(yield func(string) bool) {
		b := make([]byte, n)
		var rec func(i int) bool
		rec = func(i int) bool {
			if i == n {
				return yield(string(b))
			}
			for c := byte('!'); c <= '~'; c++ {
				if c == '/' || c == '.' {
					continue
				}
				b[i] = c
				if !rec(i + 1) {
					return false
				}
			}
			return true
		}
		rec(0)
	}
}

// Pair is one replaced value.
type Pair struct {
	Category Category `json:"category"`
	From     string   `json:"from"`
	To       string   `json:"to"`
}

// Pairs returns every replacement made so far, sorted, for --map-out.
func (m *Mapper) Pairs() []Pair {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Pair
	for c, f := range m.fwd {
		if c == CatMAC {
			continue
		}
		for k, v := range f {
			if k != v {
				out = append(out, Pair{c, k, v})
			}
		}
	}
	for k, v := range m.ips.fwd {
		if k != v {
			out = append(out, Pair{CatIP, k, v})
		}
	}
	for k, v := range m.macs {
		out = append(out, Pair{CatMAC, k, v})
	}
	for k, v := range m.uids {
		if k != v {
			out = append(out, Pair{CatUID, fmt.Sprint(k), fmt.Sprint(v)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Category != out[j].Category {
			return out[i].Category < out[j].Category
		}
		return out[i].From < out[j].From
	})
	return out
}

// Counts returns the number of distinct replaced values per category.
func (m *Mapper) Counts() map[Category]int {
	c := map[Category]int{}
	for _, p := range m.Pairs() {
		c[p.Category]++
	}
	return c
}

// Name maps a free-form name (same length).
func (m *Mapper) Name(v string) string { return m.Token(CatName, v) }

// Host maps a host or domain name label by label, keeping dots and well-known labels.
func (m *Mapper) Host(v string) string {
	if v == "" || hostKeep[strings.ToLower(v)] || m.Kept(v) {
		return v
	}
	labels := strings.Split(v, ".")
	for i, l := range labels {
		if hostKeep[strings.ToLower(l)] || (i == len(labels)-1 && i > 0 && tlds[strings.ToLower(l)]) {
			continue
		}
		labels[i] = m.Token(CatHost, l)
	}
	return strings.Join(labels, ".")
}

var hostKeep = map[string]bool{"localhost": true, "localdomain": true, "(none)": true, "": true, "localhost.localdomain": true}
var tlds = map[string]bool{"com": true, "org": true, "net": true, "io": true, "dev": true, "local": true,
	"internal": true, "lan": true, "home": true, "arpa": true, "edu": true, "gov": true, "example": true, "test": true, "invalid": true}

// SystemUIDMax: ids up to this value (and 65534, 4294967295) are system ids and kept.
const SystemUIDMax = 999

// UID maps a uid or gid: system ids are kept, others map injectively into [100000, 2^31).
func (m *Mapper) UID(id uint32) uint32 {
	if id <= SystemUIDMax || id == 65534 || id == 65535 || id == ^uint32(0) {
		return id
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.uids[id]; ok {
		return v
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], id)
	for try := 0; ; try++ {
		var t [4]byte
		binary.BigEndian.PutUint32(t[:], uint32(try))
		h := m.mac([]byte(CatUID), b[:], t[:])
		v := 100000 + binary.BigEndian.Uint32(h)%(1<<31-100000)
		if _, used := m.ruid[v]; used || v == id {
			continue
		}
		m.uids[id], m.ruid[v] = v, id
		return v
	}
}
