package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/durable"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/trust"
)

func newReleaseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Sign a channel and verify one: for whoever publishes releases",
		Long: `A channel is signed by a root: a set of ed25519 keys, a threshold of which
must sign. root.json (and N.root.json for each of its versions) lists them;
every other document keeps its bytes and gets a detached DOC.sig.

Publishing, once:
  sentinel release keygen --out k1.key        (and k2.key ...; keep them offline)
  sentinel release init-root --key k1.key,k2.key --threshold 2 --expires 1y CHANNEL_DIR
  give CHANNEL_DIR/root.json to operators out of band: it is their trust anchor
Publishing a release (versions only go up; nodes refuse a lower one):
  sentinel release sign --key k1.key,k2.key --version 7 --expires 30d CHANNEL_DIR
Changing keys (signed by the old keys and the new ones):
  sentinel release rotate-root --old-key k1.key,k2.key --key k3.key --threshold 1 --expires 1y CHANNEL_DIR
Checking:
  sentinel release verify --root ANCHOR_ROOT.json CHANNEL_DIR_OR_URL`,
	}
	cmd.AddCommand(newReleaseKeygenCmd(), newReleaseInitRootCmd(), newReleaseRotateRootCmd(), newReleaseSignCmd(), newReleaseVerifyCmd())
	return cmd
}

func newReleaseKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make an ed25519 signing key (PKCS#8 PEM, mode 0600; never overwrites) and print its key id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("keygen needs --out FILE")
			}
			k, err := trust.GenerateKey(out, nil)
			if err != nil {
				return usagef("%v", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", k.ID, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "private key file to create")
	return cmd
}

type rootFlags struct {
	keys      []string
	threshold int
	expires   string
}

func (f *rootFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.keys, "key", nil, "private key files whose public keys the root lists (comma-separated or repeated); they sign it")
	cmd.Flags().IntVar(&f.threshold, "threshold", 1, "how many distinct listed keys must sign every document")
	cmd.Flags().StringVar(&f.expires, "expires", "1y", "expiry: a duration (90d, 1y, 720h) or an RFC 3339 time")
}

func newReleaseInitRootCmd() *cobra.Command {
	var f rootFlags
	cmd := &cobra.Command{
		Use:   "init-root --key FILE[,FILE] [--threshold N] [--expires 1y] CHANNEL_DIR",
		Short: "Write the channel's first root: CHANNEL_DIR/root.json and 1.root.json",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(filepath.Join(args[0], "root.json")); err == nil {
				return usagef("%s already has a root.json: use `sentinel release rotate-root` to change keys", args[0])
			}
			keys, expires, err := f.load(time.Now())
			if err != nil {
				return err
			}
			r, err := trust.NewRoot(publicKeys(keys), f.threshold, 1, expires, keys...)
			if err != nil {
				return usagef("root: %v", err)
			}
			return writeRoot(cmd.OutOrStdout(), args[0], r)
		},
	}
	f.add(cmd)
	return cmd
}

func newReleaseRotateRootCmd() *cobra.Command {
	var f rootFlags
	var oldKeys []string
	cmd := &cobra.Command{
		Use:   "rotate-root --old-key FILE[,FILE] --key FILE[,FILE] [--threshold N] [--expires 1y] CHANNEL_DIR",
		Short: "Replace the channel's root with the next version, signed by the old keys and the new ones",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cur, err := os.ReadFile(filepath.Join(args[0], "root.json"))
			if err != nil {
				return usagef("reading the current root: %v", err)
			}
			keys, expires, err := f.load(time.Now())
			if err != nil {
				return err
			}
			olds, err := loadKeys(oldKeys)
			if err != nil {
				return err
			}
			v, err := trust.NewVerifier(nil, cur, trust.Options{AllowExpired: true})
			if err != nil {
				return err
			}
			next, err := trust.NewRoot(publicKeys(keys), f.threshold, v.Root().Version+1, expires, append(olds, keys...)...)
			if err != nil {
				return usagef("root: %v", err)
			}
			// Check as nodes will, before publishing anything.
			if err := v.UpdateRoot(trust.RootName(next.Version), next.Bytes()); err != nil {
				return err
			}
			return writeRoot(cmd.OutOrStdout(), args[0], next)
		},
	}
	f.add(cmd)
	cmd.Flags().StringSliceVar(&oldKeys, "old-key", nil, "private key files of the current root (a threshold of them)")
	return cmd
}

func (f *rootFlags) load(now time.Time) ([]*trust.PrivateKey, time.Time, error) {
	keys, err := loadKeys(f.keys)
	if err != nil {
		return nil, time.Time{}, err
	}
	expires, err := parseExpiry(f.expires, now)
	return keys, expires, err
}

// writeRoot publishes version N as N.root.json for nodes walking the chain,
// and as root.json for people reading the channel.
func writeRoot(out io.Writer, dir string, r *trust.Root) error {
	for _, name := range []string{trust.RootName(r.Version), "root.json"} {
		if err := durable.WriteFile(filepath.Join(dir, name), r.Bytes(), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "root.json version %d, threshold %d of %d keys, expires %s\n", r.Version, r.Threshold, len(r.Keys), r.Expires.Format(time.RFC3339))
	return nil
}

func loadKeys(files []string) ([]*trust.PrivateKey, error) {
	if len(files) == 0 {
		return nil, usagef("give the signing keys with --key FILE[,FILE]")
	}
	var keys []*trust.PrivateKey
	for _, f := range files {
		k, err := trust.LoadPrivateKey(f)
		if err != nil {
			return nil, usagef("key %v", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func publicKeys(keys []*trust.PrivateKey) []trust.PublicKey {
	var out []trust.PublicKey
	for _, k := range keys {
		out = append(out, k.Public())
	}
	return out
}

// parseExpiry takes "30d", "1y", any Go duration, or an RFC 3339 time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	var d time.Duration
	var err error
	switch {
	case strings.HasSuffix(s, "d") || strings.HasSuffix(s, "y"):
		n, perr := strconv.Atoi(s[:len(s)-1])
		d, err = time.Duration(n)*24*time.Hour, perr
		if strings.HasSuffix(s, "y") {
			d *= 365
		}
	default:
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return time.Time{}, usagef("--expires %q: want a positive duration (30d, 1y, 720h) or an RFC 3339 time", s)
	}
	return now.Add(d), nil
}

func newReleaseSignCmd() *cobra.Command {
	var keyFiles []string
	var version int64
	var expires string
	cmd := &cobra.Command{
		Use:   "sign --key FILE[,FILE] --version N [--expires 30d] CHANNEL_DIR [DOC...]",
		Short: "Write DOC.sig for index.json and every manifest and patch catalog it names, or for the DOCs given (paths relative to CHANNEL_DIR)",
		Long: `Signs without changing the documents: each gets a detached DOC.sig holding
its name, length, sha256, --version and expiry, signed by every --key.
Nodes refuse a document whose version is lower than one they already
trusted, so each publication takes a version at least as high as the last.
Documents the index does not name are signed by naming them after
CHANNEL_DIR; tools/sentinel.json (the sentinel builds offered for
self-update) is signed along with the index when it exists.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version < 1 {
				return usagef("sign needs --version N (1 or more, and not below the last published version)")
			}
			keys, err := loadKeys(keyFiles)
			if err != nil {
				return err
			}
			now := time.Now()
			exp, err := parseExpiry(expires, now)
			if err != nil {
				return err
			}
			dir, docs := args[0], args[1:]
			if len(docs) == 0 {
				if docs, err = channelDocuments(dir); err != nil {
					return err
				}
			}
			if !exp.After(now) {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: these signatures expire %s, in the past: nodes will refuse them\n", exp.Format(time.RFC3339))
			}
			for _, name := range docs {
				name = filepath.ToSlash(filepath.Clean(name))
				doc, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
				if err != nil {
					return usagef("%v", err)
				}
				sig, err := trust.Sign(name, doc, version, exp, keys...)
				if err != nil {
					return usagef("%v", err)
				}
				if err := durable.WriteFile(filepath.Join(dir, filepath.FromSlash(trust.SigName(name))), sig, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "signed %s version %d expires %s\n", name, version, exp.UTC().Format(time.RFC3339))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&keyFiles, "key", nil, "private key files to sign with (comma-separated or repeated)")
	cmd.Flags().Int64Var(&version, "version", 0, "version of this publication of the documents")
	cmd.Flags().StringVar(&expires, "expires", "30d", "expiry: a duration (30d, 720h) or an RFC 3339 time")
	return cmd
}

// channelDocuments lists index.json, the manifests and patch catalogs it
// names, and the sentinel builds document when there is one.
func channelDocuments(dir string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	ix, err := release.ParseIndex(filepath.Join(dir, "index.json"), data)
	if err != nil {
		return nil, err
	}
	docs := []string{"index.json"}
	for _, r := range ix.Releases {
		docs = append(docs, r.Manifest)
		if r.Patches != "" {
			docs = append(docs, r.Patches)
		}
	}
	// The sentinel builds are at a well-known path, not named by the index.
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(release.SentinelBuildsPath))); err == nil {
		docs = append(docs, release.SentinelBuildsPath)
	}
	return docs, nil
}

func newReleaseVerifyCmd() *cobra.Command {
	var o source.ChannelCheck
	cmd := &cobra.Command{
		Use:   "verify --root ROOT CHANNEL_DIR_OR_URL",
		Short: "Verify a channel as a node would: roots, index, manifests and artifacts; exit 2 on a refusal",
		Long: `Starts from ROOT (the trust anchor, obtained out of band, never from the
channel), follows the channel's root rotations (2.root.json, 3.root.json ...),
then verifies index.json, every manifest it names and every artifact they
list, one line each. With --state-dir the trusted root and versions are
kept in STATE_DIR/trust/CHANNEL_ID/ as on a node, so that a later run
refuses older metadata (a rollback).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Say = func(format string, args ...any) { fmt.Fprintf(cmd.OutOrStdout(), format, args...) }
			o.Warn = func(format string, args ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format, args...) }
			return o.Run(cmd.Context(), args[0])
		},
	}
	cmd.Flags().StringVar(&o.Root, "root", "", "trust anchor: the channel's root.json as obtained from its publisher")
	cmd.Flags().StringVar(&o.StateDir, "state-dir", "", "keep trusted state here (default: none, each run starts from --root)")
	cmd.Flags().StringVar(&o.ChannelID, "channel-id", "default", "name of the channel's trusted state under --state-dir")
	cmd.Flags().BoolVar(&o.AllowExpired, "allow-expired-metadata", false, "accept expired documents (each one is reported): for air-gapped mirrors only")
	cmd.Flags().BoolVar(&o.MetadataOnly, "metadata-only", false, "do not read the artifacts")
	return cmd
}
