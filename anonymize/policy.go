package anonymize

import (
	"encoding/binary"
	"strings"
	"unicode/utf16"

	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/criukit/criukit/anonymize/dict"
	"github.com/criukit/criukit/anonymize/logscrub"
	"github.com/criukit/criukit/anonymize/pseudo"
	"github.com/criukit/criukit/image"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The policy: every value is classified once, by the mapper (pseudo.Mapper) with the run's public
// predicate below. A value is either
//   - public: part of the distro or kernel vocabulary (a component of a system path that the dump
//     itself holds, e.g. "python3" of /usr/lib/python3.11, or a well-known component such as
//     "tmp"), or a substring of a system path the dump holds. It maps to itself in every kind
//     (comm, argv, env, path component, host label), so nothing the rewriter keeps is ever in the
//     verifier's dictionary; or
//   - private: it gets one keyed same-length pseudonym, shared by every kind (the hostname in
//     utsns, in memory and in logs map alike), and the verifier's dictionary is exactly the set of
//     private values the level hides (docs/anonymize.md has the table).
// --secret values are private at every level, whatever else they are, and so are their pieces
// (prefixes and suffixes of >= 6 bytes, 7- and 8-byte windows, UTF-16LE copies): r.sec replaces
// them in every string, file and page, and the verifier scans for them everywhere.
// Nothing is public at paranoid.

// wellKnownEnv are environment variable names kept at identity (others are pseudonymized).
var wellKnownEnv = map[string]bool{}

// publicWords are command line words and option names kept at identity.
var publicWords = map[string]bool{}

func init() {
	for _, s := range strings.Fields(`PATH HOME TERM LANG LANGUAGE USER LOGNAME SHELL PWD OLDPWD SHLVL HOSTNAME MAIL
		TZ TMPDIR EDITOR PAGER DISPLAY COLORTERM XDG_RUNTIME_DIR XDG_SESSION_ID XDG_CONFIG_HOME XDG_DATA_HOME
		LC_ALL LC_CTYPE LC_MESSAGES LC_NUMERIC LC_TIME LC_COLLATE LC_MONETARY LS_COLORS SSH_TTY SSH_CLIENT
		SSH_CONNECTION MOTD_SHOWN INVOCATION_ID JOURNAL_STREAM SYSTEMD_EXEC_PID NOTIFY_SOCKET LISTEN_FDS
		LISTEN_PID container GOPATH GOROOT GOFLAGS GOCACHE PYTHONPATH PYTHONHOME PYTHONUNBUFFERED
		LD_LIBRARY_PATH LD_PRELOAD MANPATH INFOPATH SUDO_USER SUDO_UID SUDO_GID SUDO_COMMAND CI _`) {
		wellKnownEnv[s] = true
	}
	for _, s := range strings.Fields(`help version verbose quiet debug daemon daemonize foreground config conf port bind
		listen host user group dir file log logfile loglevel pidfile socket unixsocket timeout import time sleep
		print exec run start stop serve server client save dbfilename appendonly protected-mode yes no true false
		on off error_log pid daemon master_process worker_processes events http include access_log password
		passwd token key secret name db data path dump restore`) {
		publicWords[s] = true
	}
}

// collectPublic records the system paths of the input (kept whole below paranoid) and their
// components and stems: the public vocabulary of this dump.
func (r *run) collectPublic() {
	var sb, paths strings.Builder
	add := func(p string) {
		if strings.HasPrefix(p, "/") {
			paths.WriteString(p)
			paths.WriteByte(0)
		}
		if r.lvl >= Paranoid || !strings.HasPrefix(p, "/") || !pseudo.IsSystemPath(p) {
			return
		}
		p = strings.TrimSuffix(p, " (deleted)")
		sb.WriteString(p)
		sb.WriteByte(0)
		for _, c := range strings.Split(p, "/") {
			if c == "" {
				continue
			}
			r.pubWords[c] = true
			if i := strings.IndexByte(c, '.'); i > 0 {
				r.pubWords[c[:i]] = true
			}
		}
	}
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case f.Kind() == protoreflect.MessageKind:
				if f.IsList() {
					for i := 0; i < v.List().Len(); i++ {
						walk(v.List().Get(i).Message())
					}
				} else if !f.IsMap() {
					walk(v.Message())
				}
			case f.Kind() == protoreflect.StringKind:
				if rule := fieldRules[f.FullName()]; rule == rulePath || rule == ruleName || rule == ruleMountSource {
					each(f, v, func(x protoreflect.Value) { add(x.String()) })
				} else if rule == ruleMountOptions {
					// option names ("workdir=", "nr_inodes=") are the kernel's words: kept at every level
					for _, o := range strings.Split(v.String(), ",") {
						k, _, _ := strings.Cut(o, "=")
						r.schemaText += k + "\x00"
					}
				}
			}
			return true
		})
	}
	for _, img := range r.imgs {
		for _, e := range img.Entries {
			walk(e.Msg.ProtoReflect())
		}
	}
	r.pubText += sb.String()
	r.pathText = paths.String()
}

// collectSchema adds the keys of runtime JSON files (their schema: "secretsPath", "conmonPidFile")
// to the public text, except the keys of annotation, label and interface maps (user data).
func (r *run) collectSchema(v any, parent string) {
	var sb strings.Builder
	var walk func(v any, parent string)
	walk = func(v any, parent string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if !annotationMap[parent] && !ifaceMap[parent] {
					sb.WriteString(k)
					sb.WriteByte(0)
				} else if publicKey(k) {
					// io.podman.annotations.autoremove: the runtime's words, kept at every level
					r.schemaText += k + "\x00"
				}
				walk(e, k)
			}
		case []any:
			for _, e := range x {
				walk(e, parent)
			}
		case string:
			if jsonKeep[parent] && enumLike.MatchString(x) {
				r.schemaWords[x] = true
			}
		}
	}
	walk(v, parent)
	if r.lvl < Paranoid {
		r.pubText += sb.String()
	}
}

// public is the mapper's public predicate (see the policy above).
func (r *run) public(v string) bool {
	if v == "" || r.secretPiece(v) {
		return false
	}
	if r.schemaWords[v] || strings.Contains(r.schemaText, v) {
		return true // the runtime's own vocabulary ("type": "bind", io.podman.*), kept even at paranoid
	}
	if r.lvl >= Paranoid {
		return false
	}
	if pseudo.IsSystemComponent(v) || r.pubWords[v] || publicWords[v] || logscrub.IsStdIfName(v) {
		return true
	}
	return strings.Contains(r.pubText, v)
}

// secretPiece reports whether v holds a --secret value or one of its pieces.
func (r *run) secretPiece(v string) bool {
	if r.sec == nil || r.sec.Len() == 0 {
		return false
	}
	hit := false
	r.sec.Find([]byte(v), len(v), 0, func(dict.Hit) bool { hit = true; return false })
	return hit
}

// buildSecrets makes the --secret dictionary: each value, its UTF-16LE form, its prefixes and
// suffixes of >= 6 bytes and its 7- and 8-byte windows, each replaced by the same piece of the
// value's pseudonym (so a piece and the whole map alike). A piece that is a public word or part
// of one of the dump's own paths ("criukit-" of the program's path) is not a findable piece of
// the secret and is left out; the whole value always counts. Run after scan (pathText).
func (r *run) buildSecrets() {
	d := dict.New()
	for _, s := range r.o.Secrets {
		if len(s) < dict.MinLen {
			continue
		}
		t := r.m.Token(pseudo.CatSecret, s)
		d.Add("secret", []byte(s), []byte(t))
		d.Add("secret-utf16", utf16le(s), utf16le(t))
		// a piece that is only a public word ("-secret" of "my-secret-42") is not findable
		// as the secret: it stays where it is public (an option name)
		piece := func(a, b int) {
			if w := strings.Trim(s[a:b], "-_./ =:@"); !r.public(w) && !strings.Contains(r.pathText, s[a:b]) {
				d.Add("secret-piece", []byte(s[a:b]), []byte(t[a:b]))
			}
		}
		for n := len(s) - 1; n >= 6; n-- {
			piece(0, n)
			piece(len(s)-n, len(s))
		}
		for _, w := range []int{7, 8} {
			for i := 0; i+w <= len(s); i++ {
				piece(i, i+w)
			}
		}
	}
	d.Compile()
	r.sec = d
}

func utf16le(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// scrubSecrets replaces secret values in s (every level, every string of the output).
func (r *run) scrubSecrets(s string) string { return replaceIn(r.sec, s) }

// replaceIn returns s with every value of d that has a replacement replaced (same length).
func replaceIn(d *dict.Dict, s string) string {
	if d == nil || d.Len() == 0 || len(s) < dict.MinLen {
		return s
	}
	b := []byte(s)
	if d.ReplaceBytes(b, len(b)) == 0 {
		return s
	}
	return string(b)
}

// regBytes returns the printable run (>= 5 bytes) of a register value read as little-endian
// bytes, and its offset, or -1.
func regBytes(v uint64) ([]byte, int) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	best, at, start := 0, -1, -1
	for i := 0; i <= 8; i++ {
		if i < 8 && b[i] >= 0x20 && b[i] < 0x7f {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start > best {
			best, at = i-start, start
		}
		start = -1
	}
	if best < 5 {
		return nil, -1
	}
	return append([]byte(nil), b[at:at+best]...), at
}

// regPiece finds a register's string bytes inside a dictionary value; it returns the value's
// replacement piece (nil: none).
func regPiece(d *dict.Dict, s []byte) (*dict.Entry, int) {
	if d == nil {
		return nil, -1
	}
	for _, e := range d.Entries() {
		if e.To == nil || len(e.From) < len(s) {
			continue
		}
		if k := strings.Index(string(e.From), string(s)); k >= 0 {
			e := e
			return &e, k
		}
	}
	return nil, -1
}

// rewriteRegisters (content and identity: structure zeroes them) replaces general registers that
// hold bytes of a hidden value (a string being copied, a socket path in rbx) with the same bytes of
// its pseudonym. It returns the CORE images it changed.
func (r *run) rewriteRegisters(d *dict.Dict) []string {
	var changed []string
	for name, img := range r.imgs {
		if img.Desc.Name != "CORE" {
			continue
		}
		n := 0
		for _, e := range img.Entries {
			c, ok := e.Msg.(*criu_core.CoreEntry)
			if !ok || c.GetThreadInfo() == nil || c.GetThreadInfo().GetGpregs() == nil {
				continue
			}
			m := c.GetThreadInfo().GetGpregs().ProtoReflect()
			m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
				if f.Kind() != protoreflect.Uint64Kind || f.IsList() {
					return true
				}
				s, at := regBytes(v.Uint())
				if s == nil {
					return true
				}
				ent, k := regPiece(d, s)
				if ent == nil {
					return true
				}
				var b [8]byte
				binary.LittleEndian.PutUint64(b[:], v.Uint())
				copy(b[at:], ent.To[k:k+len(s)])
				m.Set(f, protoreflect.ValueOfUint64(binary.LittleEndian.Uint64(b[:])))
				n++
				return true
			})
		}
		if n > 0 {
			changed = append(changed, name)
			r.count("registers-rewritten", n)
		}
	}
	return changed
}

// regLeaks is the verifier's side of rewriteRegisters.
func regLeaks(img *image.Image, d *dict.Dict, bad func(string)) {
	for i, e := range img.Entries {
		c, ok := e.Msg.(*criu_core.CoreEntry)
		if !ok || c.GetThreadInfo() == nil || c.GetThreadInfo().GetGpregs() == nil {
			continue
		}
		c.GetThreadInfo().GetGpregs().ProtoReflect().Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if f.Kind() == protoreflect.Uint64Kind && !f.IsList() {
				if s, _ := regBytes(v.Uint()); s != nil {
					if ent, _ := regPiece(d, s); ent != nil {
						bad(strings.Join([]string{"entry", regItoa(i), "register", string(f.Name()), "holds", regItoa(len(s)), "bytes of a", string(ent.Kind), "value"}, " "))
					}
				}
			}
			return true
		})
	}
}

func regItoa(n int) string { return uitoa(uint32(n)) }
