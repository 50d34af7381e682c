package release

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBuildVersion(t *testing.T) {
	for _, tc := range []struct {
		in       string
		numbered bool
	}{
		{"0.4.1", true}, {"v0.4.1", true}, {"1", true}, {"1.2.3.4", true},
		{"dev", false}, {"", false}, {"v0.4.1-3-gabc1234", false}, {"abc1234", false},
		{"0.4.1-dirty", false}, {"1.2.3.4.5", false}, {"01.2", false},
	} {
		if _, ok := ParseBuildVersion(tc.in); ok != tc.numbered {
			t.Errorf("ParseBuildVersion(%q): numbered %v, want %v", tc.in, ok, tc.numbered)
		}
	}
	a, _ := ParseBuildVersion("v0.10.0")
	b, _ := ParseBuildVersion("0.9.3")
	if a.Compare(b) <= 0 {
		t.Errorf("0.10.0 should be newer than 0.9.3")
	}
}

const sha = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

func TestParseSentinelBuildsRefuses(t *testing.T) {
	for _, tc := range []struct{ name, doc, field string }{
		{"dev version", `{"builds":[{"version":"dev","os":"linux","arch":"amd64","artifact":{"url":"a","sha256":"` + sha + `","size":3}}]}`, "builds[0].version"},
		{"no os", `{"builds":[{"version":"0.1.0","os":"","arch":"amd64","artifact":{"url":"a","sha256":"` + sha + `","size":3}}]}`, "builds[0].os"},
		{"bad digest", `{"builds":[{"version":"0.1.0","os":"linux","arch":"amd64","artifact":{"url":"a","sha256":"ABC","size":3}}]}`, "builds[0].artifact.sha256"},
		{"no size", `{"builds":[{"version":"0.1.0","os":"linux","arch":"amd64","artifact":{"url":"a","sha256":"` + sha + `","size":0}}]}`, "builds[0].artifact.size"},
		{"twice", `{"builds":[{"version":"0.1.0","os":"linux","arch":"amd64","artifact":{"url":"a","sha256":"` + sha + `","size":3}},{"version":"0.1.0","os":"linux","arch":"amd64","artifact":{"url":"b","sha256":"` + sha + `","size":3}}]}`, "builds[1]"},
		{"unknown field", `{"builds":[],"extra":1}`, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSentinelBuilds("tools/sentinel.json", []byte(tc.doc))
			var me *MetadataError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want a MetadataError naming %s", err, tc.field)
			}
		})
	}
}

func TestSentinelBuildsNewest(t *testing.T) {
	b, err := ParseSentinelBuilds("x", []byte(`{"builds":[
		{"version":"0.9.0","os":"linux","arch":"amd64","artifact":{"url":"a","sha256":"`+sha+`","size":3}},
		{"version":"0.10.0","os":"linux","arch":"amd64","artifact":{"url":"b","sha256":"`+sha+`","size":3}},
		{"version":"0.11.0","os":"linux","arch":"arm64","artifact":{"url":"c","sha256":"`+sha+`","size":3}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := b.Newest("linux", "amd64"); !ok || got.Version != "0.10.0" {
		t.Errorf("newest linux/amd64: %+v %v, want 0.10.0", got, ok)
	}
	if _, ok := b.Newest("darwin", "amd64"); ok {
		t.Errorf("a build for darwin/amd64 where there is none")
	}
}
