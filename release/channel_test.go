package release

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/channel"
)

// fakeDocs is a verified channel in memory: what package channel gives
// release once the metadata verified.
type fakeDocs struct {
	docs    map[string]string
	targets map[string]channel.Target
}

func (f fakeDocs) URL() string { return "https://up.invalid/channel/" }
func (f fakeDocs) Has(name string) bool {
	_, ok := f.targets[name]
	return ok
}
func (f fakeDocs) Read(_ context.Context, name string) ([]byte, error) {
	if d, ok := f.docs[name]; ok {
		return []byte(d), nil
	}
	return nil, &channel.Error{Doc: name, Check: channel.CheckNotListed, Err: errors.New("no such target")}
}
func (f fakeDocs) Target(name string) (channel.Target, error) {
	if t, ok := f.targets[name]; ok {
		return t, nil
	}
	return channel.Target{}, &channel.Error{Doc: name, Check: channel.CheckNotListed, Err: errors.New("no such target")}
}

const testSHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func newFake() fakeDocs {
	return fakeDocs{
		docs: map[string]string{
			"index.json":                   `{"channel":"s","releases":[{"version":"3.4.2","manifest":"releases/3.4.2/manifest.json"}]}`,
			"releases/3.4.2/manifest.json": goodManifest,
		},
		targets: map[string]channel.Target{
			"releases/a/nats.tgz": {Name: "releases/a/nats.tgz", Length: 10, SHA256: testSHA, UnpackedSize: 99,
				URL: "https://up.invalid/channel/targets/releases/a/" + testSHA + ".nats.tgz"},
		},
	}
}

// A manifest's artifacts resolve to their signed targets: the
// consistent-snapshot URL and the signed unpacked size.
func TestManifestResolvesArtifactTargets(t *testing.T) {
	ctx := context.Background()
	ch, err := OpenChannel(ctx, newFake())
	if err != nil {
		t.Fatal(err)
	}
	m, err := ch.Manifest(ctx, "3.4.2")
	if err != nil {
		t.Fatal(err)
	}
	a := m.Components[0].Artifact
	if a.URL != newFake().targets["releases/a/nats.tgz"].URL || a.UnpackedSize != 99 {
		t.Errorf("artifact %+v", a)
	}
}

// An artifact entry must agree with its signed target, name one, and
// stay in the channel; the manifest must agree with the index.
func TestManifestArtifactRefusals(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, old, new, want string
		check                string
	}{
		{"size differs", `"size": 10`, `"size": 11`, "the signed target releases/a/nats.tgz is 10 bytes", channel.CheckMismatch},
		{"digest differs", testSHA, strings.Repeat("ab", 32), "sha256 " + testSHA, channel.CheckMismatch},
		{"not a target", "../a/nats.tgz", "../a/other.tgz", "releases/a/other.tgz", channel.CheckNotListed},
		{"elsewhere", "../a/nats.tgz", "https://elsewhere.invalid/nats.tgz", "is not a target of the channel", ""},
		{"above the channel", "../a/nats.tgz", "../../../nats.tgz", "is not a target of the channel", ""},
		{"version", `"version": "3.4.2", "components"`, `"version": "3.4.3", "components"`, "index says 3.4.2, manifest says 3.4.3", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.docs["releases/3.4.2/manifest.json"] = strings.Replace(goodManifest, tc.old, tc.new, 1)
			ch, err := OpenChannel(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ch.Manifest(ctx, "3.4.2")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			var ce *channel.Error
			if tc.check != "" && (!errors.As(err, &ce) || ce.Check != tc.check) {
				t.Errorf("got %v, want the %s check", err, tc.check)
			}
		})
	}
}

// The builds document is read only when the signed targets list it.
func TestChannelSentinelBuilds(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	ch, _ := OpenChannel(ctx, f)
	if b, found, err := ch.SentinelBuilds(ctx); err != nil || found || b != nil {
		t.Fatalf("got %v %v %v, want no builds and no error", b, found, err)
	}
	f.docs[SentinelBuildsPath] = `{"builds":[{"version":"0.2.0","os":"linux","arch":"amd64","artifact":{"url":"sentinel-0.2.0","sha256":"` + testSHA + `","size":3}}]}`
	f.targets[SentinelBuildsPath] = channel.Target{Name: SentinelBuildsPath}
	f.targets["tools/sentinel-0.2.0"] = channel.Target{Length: 3, SHA256: testSHA, URL: "https://up.invalid/channel/targets/tools/" + testSHA + ".sentinel-0.2.0"}
	b, found, err := ch.SentinelBuilds(ctx)
	if err != nil || !found {
		t.Fatalf("got %v %v", found, err)
	}
	if nb, _ := b.Newest("linux", "amd64"); nb.Artifact.URL != f.targets["tools/sentinel-0.2.0"].URL {
		t.Errorf("artifact URL %s is not the signed target's", nb.Artifact.URL)
	}
}
