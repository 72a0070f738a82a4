package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultAPI is GitHub's REST API base URL.
const DefaultAPI = "https://api.github.com"

// TokenEnv are the environment variables a GitHub token is read from, in order.
var TokenEnv = []string{"CRIUKIT_GITHUB_TOKEN", "GITHUB_TOKEN"}

// Limits: GitHub rejects issue bodies over 65536 characters; browsers and GitHub choke on very long URLs.
const (
	MaxBody   = 65000
	MaxURLLen = 8000
)

// ErrBadRepo: --submit wants OWNER/REPO.
var ErrBadRepo = errors.New("repository must be OWNER/REPO")

// ErrSubmit: GitHub refused the issue.
var ErrSubmit = errors.New("GitHub refused the issue")

var repoRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$`)

// CheckRepo validates OWNER/REPO.
func CheckRepo(repo string) error {
	if !repoRe.MatchString(repo) {
		return fmt.Errorf("%w: %q", ErrBadRepo, repo)
	}
	return nil
}

// Token returns the GitHub token from the environment ("" if none).
func Token() string {
	for _, k := range TokenEnv {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return ""
}

// AttachNote is appended to a submitted body: the API cannot attach files.
func AttachNote(bundle string) string {
	return "\n---\nThe anonymized report bundle `" + bundleBase(bundle) + "` (images, full logs, MANIFEST.json) could not be attached through the API: the reporter will attach it to this issue.\n"
}

func bundleBase(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// Truncate cuts s to at most n bytes on a rune boundary, adding a note when cut.
func Truncate(s string, n int, note string) string {
	if len(s) <= n {
		return s
	}
	cut := n - len(note)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + note
}

// Created is GitHub's answer to a created issue.
type Created struct {
	Number  int    `json:"number"`
	HTMLURL string `json:"html_url"`
}

// Submit files the issue: POST {api}/repos/{repo}/issues with a bearer token.
func Submit(ctx context.Context, c *http.Client, api, token, repo string, is Issue) (*Created, error) {
	if err := CheckRepo(repo); err != nil {
		return nil, err
	}
	if token == "" {
		return nil, fmt.Errorf("%w: no token (set %s)", ErrSubmit, strings.Join(TokenEnv, " or "))
	}
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	body, err := json.Marshal(map[string]string{"title": is.Title, "body": Truncate(is.Body, MaxBody, "\n\n[... truncated: see the attached bundle ...]\n")})
	if err != nil {
		return nil, err
	}
	u := strings.TrimRight(api, "/") + "/repos/" + repo + "/issues"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "criukit-report")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: POST %s: %v", ErrSubmit, u, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		msg := strings.TrimSpace(string(rb))
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(rb, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		return nil, fmt.Errorf("%w: POST %s: %s: %s (check the token's issues:write permission and OWNER/REPO)", ErrSubmit, u, resp.Status, Truncate(msg, 300, "..."))
	}
	var cr Created
	if err := json.Unmarshal(rb, &cr); err != nil {
		return nil, fmt.Errorf("%w: POST %s: bad answer: %v", ErrSubmit, u, err)
	}
	return &cr, nil
}

// NewIssueURL is the prefilled https://github.com/OWNER/REPO/issues/new URL, the body cut so
// that the URL stays under MaxURLLen.
func NewIssueURL(repo string, is Issue) string {
	base := "https://github.com/" + repo + "/issues/new?title=" + url.QueryEscape(is.Title) + "&body="
	note := "\n\n[... truncated: the full ISSUE.md is in the bundle, attach it ...]\n"
	body := is.Body
	for {
		u := base + url.QueryEscape(body)
		if len(u) <= MaxURLLen || body == "" {
			return u
		}
		// escaped text is at most 3x longer: shrink proportionally, then recheck
		over := len(u) - MaxURLLen
		n := len(body) - over/3 - 1
		if n >= len(body)-len(note) {
			n = len(body) - len(note) - 1
		}
		if n < len(note) {
			body = ""
			continue
		}
		body = Truncate(body, n, note)
	}
}

// GHCommand is the equivalent `gh issue create` command (body read from a file).
func GHCommand(repo, title, bodyFile string) string {
	return "gh issue create --repo " + shellQuote(repo) + " --title " + shellQuote(title) + " --body-file " + shellQuote(bodyFile)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
