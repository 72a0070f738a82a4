package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/criukit/criukit/anonymize"
	"github.com/criukit/criukit/anonymize/pseudo"
	"github.com/criukit/criukit/report"
	"github.com/spf13/cobra"
)

var reportFlags struct {
	images  string
	logs    []string
	level   string
	keyFile string
	mapOut  string
	out     string
	json    bool
	submit  string
	yes     bool
	apiURL  string
	secrets []string
	criu    string
	noCriu  bool
}

var reportCmd = &cobra.Command{
	Use:   "report [IMGDIR] [--log FILE]... [--level L] [--key-file F] [--map-out F] [-o BUNDLE.tar.gz] [--submit OWNER/REPO]",
	Short: "Prepare a ready-to-file, anonymized CRIU bug report bundle (and optionally file it on GitHub)",
	Long: `Collects what CRIU's issue template asks for and writes one reproducible tar.gz bundle:

  ISSUE.md      CRIU's issue template, pre-filled: the failing log's errors and an excerpt around
                them, the known issues found in the logs (explanation + fix), criu --version,
                criu check --all, a per-feature table, kernel release/version (never the host
                name), arch, distro, relevant kernel config options, container runtime versions,
                CRIU command lines and config files found in the logs or at CRIU's default paths.
  summary.json  the same data for scripts
  images/       the image dir, anonymized (see "criukit anonymize --help" for the levels)
  logs/         every log, anonymized in full
  MANIFEST.json what the anonymizer replaced and dropped, and its verification

Logs, images, command lines and config files are anonymized with ONE mapping (default level
identity), so a path in the log and in files.img gets the same token. With --key-file the tokens
(and the whole bundle, byte for byte) are the same on every run; --map-out keeps the mapping
locally (never in the bundle).

--submit OWNER/REPO files the issue through GitHub's REST API with the token in
CRIUKIT_GITHUB_TOKEN or GITHUB_TOKEN, after showing what will be sent and asking (--yes skips the
question). The API cannot attach files: attach the bundle to the issue yourself. Without a token
it prints a prefilled new-issue URL and the equivalent "gh issue create" command.`,
	Example: `  criu dump -t 1234 -D /tmp/d -v4 -o dump.log || criukit report /tmp/d --log /tmp/d/dump.log
  criukit report --log restore.log --log dump.log -o /tmp/criu-report.tar.gz
  criukit report /tmp/d --level structure --key-file ~/.criukit.key --map-out ~/map.json
  tar -xzOf criu-report.tar.gz criukit-report/ISSUE.md | less
  GITHUB_TOKEN=... criukit report /tmp/d --submit checkpoint-restore/criu
  criukit report /tmp/d --json | jq .known_issues`,
	Args: cobra.MaximumNArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		stdout := cmd.OutOrStdout()
		if len(args) == 1 { // the CLI's convention: input positional (--images stays as an alias)
			if reportFlags.images != "" && reportFlags.images != args[0] {
				return fmt.Errorf("report: images given twice (%s and --images %s)", args[0], reportFlags.images)
			}
			reportFlags.images = args[0]
		}
		lvl, err := anonymize.ParseLevel(reportFlags.level)
		if err != nil {
			return fmt.Errorf("report: --level: %w", err)
		}
		if reportFlags.submit != "" {
			if err := report.CheckRepo(reportFlags.submit); err != nil {
				return fmt.Errorf("report: --submit: %w", err)
			}
		}
		o := report.Options{Images: reportFlags.images, Logs: reportFlags.logs, Level: lvl, MapOut: reportFlags.mapOut,
			Secrets: reportFlags.secrets, Criu: reportFlags.criu, NoCriu: reportFlags.noCriu, Version: version}
		if reportFlags.keyFile != "" {
			if o.Key, err = pseudo.LoadKey(reportFlags.keyFile); err != nil {
				return fmt.Errorf("report: %w", err)
			}
		}
		prog := newProgress(cmd, reportFlags.json)
		defer prog.done()
		if prog != nil {
			o.Progress = func(done, total int64, file string) {
				if strings.HasPrefix(file, "bundle: ") {
					prog.printf(false, "writing bundle: member %d of %d %s", done+1, total, strings.TrimPrefix(file, "bundle: "))
					return
				}
				prog.printf(false, "anonymizing: %d/%d MiB %s", done>>20, total>>20, file)
			}
		}
		res, err := report.Build(cmd.Context(), reportFlags.out, o)
		prog.done()
		if err != nil {
			return err
		}
		s := res.Summary
		if reportFlags.json {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(s); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stdout, "wrote %s (level %s): %d images, %d logs, %d dropped\n", res.Bundle, s.Level, len(s.Images), len(s.Logs), len(s.Dropped))
			fmt.Fprintf(stdout, "title: %s\n", res.Issue.Title)
			if len(s.Findings) == 0 {
				fmt.Fprintln(stdout, "known issues: none matched")
			}
			for _, m := range s.Findings {
				fmt.Fprintf(stdout, "known issue %s: %s\n  fix: %s\n", m.ID, m.Title, m.Fix)
			}
			fmt.Fprintf(stdout, "review it: tar -xzOf %s %sISSUE.md\n", res.Bundle, report.Prefix)
			if reportFlags.mapOut != "" {
				fmt.Fprintf(stdout, "mapping (keep it private): %s\n", reportFlags.mapOut)
			}
		}
		if reportFlags.submit == "" {
			return nil
		}
		return submitIssue(cmd, res)
	},
}

func submitIssue(cmd *cobra.Command, res *report.Result) error {
	repo, out := reportFlags.submit, cmd.ErrOrStderr()
	token := report.Token()
	if token == "" {
		fmt.Fprintf(out, "\nno GitHub token (%s): open this prefilled issue in a browser and attach %s:\n\n",
			strings.Join(report.TokenEnv, " or "), res.Bundle)
		fmt.Fprintln(out, report.NewIssueURL(repo, res.Issue))
		fmt.Fprintf(out, "\nor with the GitHub CLI:\n  tar -xzOf %s %sISSUE.md | %s\n", res.Bundle, report.Prefix,
			report.GHCommand(repo, res.Issue.Title, "-"))
		return nil
	}
	is := res.Issue
	is.Body += report.AttachNote(res.Bundle)
	fmt.Fprintf(out, "\n===== will POST to %s/repos/%s/issues =====\ntitle: %s\n\n%s\n===== end =====\n", reportFlags.apiURL, repo, is.Title, is.Body)
	if !reportFlags.yes {
		fmt.Fprintf(out, "File this issue on %s? [y/N] ", repo)
		ans, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(ans)); a != "y" && a != "yes" {
			fmt.Fprintln(out, "not filed")
			return nil
		}
	}
	cr, err := report.Submit(cmd.Context(), nil, reportFlags.apiURL, token, repo, is)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "filed issue #%d: %s\nthe API cannot attach files: attach %s to the issue now\n", cr.Number, cr.HTMLURL, res.Bundle)
	return nil
}

func init() {
	f := reportCmd.Flags()
	f.StringVar(&reportFlags.images, "images", "", "CRIU image dir, same as the IMGDIR argument (kept for old scripts)")
	f.StringArrayVar(&reportFlags.logs, "log", nil, "CRIU log file (-o of the failing dump/restore; repeatable)")
	f.StringVar(&reportFlags.level, "level", "identity", "anonymization level: content, identity, structure or paranoid")
	f.StringVar(&reportFlags.keyFile, "key-file", "", "anonymization key file (>= 16 bytes): same tokens and same bundle on every run")
	f.StringVar(&reportFlags.mapOut, "map-out", "", "write the original->token mapping (JSON) here; never bundled")
	f.StringVarP(&reportFlags.out, "output", "o", "criu-report.tar.gz", "bundle to write (must not exist)")
	f.BoolVar(&reportFlags.json, "json", false, "print summary.json to stdout")
	f.StringVar(&reportFlags.submit, "submit", "", "file the issue on GitHub repo OWNER/REPO (e.g. checkpoint-restore/criu)")
	f.BoolVar(&reportFlags.yes, "yes", false, "with --submit: do not ask for confirmation")
	f.StringVar(&reportFlags.apiURL, "api-url", report.DefaultAPI, "GitHub REST API base URL (GitHub Enterprise: https://HOST/api/v3)")
	f.StringArrayVar(&reportFlags.secrets, "secret", nil, "extra word to replace everywhere and scan for (repeatable)")
	f.StringVar(&reportFlags.criu, "criu", "", "criu binary (default: CRIUKIT_CRIU, /usr/local/sbin/criu, PATH)")
	f.BoolVar(&reportFlags.noCriu, "no-criu", false, "do not run criu (--version, check --all)")
	root.AddCommand(reportCmd)
}
