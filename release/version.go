package release

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Version is a dotted numeric release version such as 3.4.2. Patch levels
// of components use a suffix ("3.4.2-p1"); the suffix orders after the bare
// version. Patch levels ("pN") order by their number (p9 < p10), other
// suffixes lexically.
type Version struct {
	parts  []int
	suffix string
	text   string
}

// ParseVersion accepts one to four dot-separated non-negative integers with an
// optional "-suffix".
func ParseVersion(s string) (Version, error) {
	if s == "" {
		return Version{}, fmt.Errorf("empty version")
	}
	main, suffix, _ := strings.Cut(s, "-")
	fields := strings.Split(main, ".")
	if len(fields) > 4 {
		return Version{}, fmt.Errorf("version %q has more than four parts", s)
	}
	v := Version{suffix: suffix, text: s}
	for _, f := range fields {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || f == "" || (len(f) > 1 && f[0] == '0') {
			return Version{}, fmt.Errorf("version %q: %q is not a number", s, f)
		}
		v.parts = append(v.parts, n)
	}
	return v, nil
}

// MustVersion is ParseVersion for constants known to be valid.
func MustVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

func (v Version) String() string { return v.text }

// IsZero reports whether v was never set.
func (v Version) IsZero() bool { return v.text == "" }

// Compare returns -1, 0 or 1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	for i := 0; i < len(v.parts) || i < len(w.parts); i++ {
		a, b := at(v.parts, i), at(w.parts, i)
		if a != b {
			if a < b {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.suffix == w.suffix:
		return 0
	case v.suffix == "":
		return -1
	case w.suffix == "":
		return 1
	}
	if a, ok := PatchNumber(v.suffix); ok {
		if b, ok := PatchNumber(w.suffix); ok {
			return cmp.Compare(a, b)
		}
	}
	return strings.Compare(v.suffix, w.suffix)
}

// PatchNumber is N of a patch level suffix "pN" (N from 1, no leading
// zero), or false.
func PatchNumber(suffix string) (int, bool) {
	digits, ok := strings.CutPrefix(suffix, "p")
	if !ok || digits == "" || digits[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 || strconv.Itoa(n) != digits {
		return 0, false
	}
	return n, true
}

func at(p []int, i int) int {
	if i < len(p) {
		return p[i]
	}
	return 0
}
