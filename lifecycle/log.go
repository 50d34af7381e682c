package lifecycle

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
)

// LogCommandMarker starts the logged command line of every run: the
// product's docs recover a run by hand from it.
const LogCommandMarker = "Running with command: "

// LogPath is the cluster's log, on the core node.
func LogPath(inv *cluster.Inventory) string {
	return filepath.Join(inv.Core().Root, "logs", "sentinel-cli.log")
}

// OpenLog appends to the cluster's log, rotated by size. Compression
// stays off: lumberjack's compressor races with Close.
func OpenLog(inv *cluster.Inventory) (*zap.Logger, func(), error) {
	dir := filepath.Dir(LogPath(inv))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("opening the log in %s: %w", dir, err)
	}
	lj := &lumberjack.Logger{Filename: LogPath(inv), MaxSize: 50, MaxBackups: 5}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeLevel = zapcore.CapitalLevelEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(lj), zap.InfoLevel)
	log := zap.New(core)
	return log, func() { _ = log.Sync(); _ = lj.Close() }, nil
}

// CommandLine renders argv so that it can be pasted back into a shell, as
// the recovery procedure asks.
func CommandLine(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

// SplitCommandLine undoes CommandLine: words separated by spaces, some in
// single quotes (a quote inside them closes them, adds \' and opens them
// again).
func SplitCommandLine(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && c == '\'':
			inQuote = false
		case inQuote:
			cur.WriteByte(c)
		case c == '\'':
			inQuote, inWord = true, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// LoggedCommand is one "Running with command:" line of the log.
type LoggedCommand struct {
	At   time.Time
	Argv []string
}

// LoggedCommands reads every command line the log holds, oldest first. A
// missing log holds none.
func LoggedCommands(path string) ([]LoggedCommand, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []LoggedCommand
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, LogCommandMarker)
		if i < 0 {
			continue
		}
		argv, err := SplitCommandLine(line[i+len(LogCommandMarker):])
		if err != nil || len(argv) < 2 {
			continue // not one of ours
		}
		c := LoggedCommand{Argv: argv}
		if ts, _, ok := strings.Cut(line, "\t"); ok {
			c.At, _ = time.Parse("2006-01-02T15:04:05.000Z0700", ts)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// loggedProgress writes every step to the log file as well.
type loggedProgress struct {
	next rollout.Progress
	log  *zap.Logger
}

func (p *loggedProgress) StepStarted(node string, s rollout.Step) {
	p.log.Info("step started", zap.String("node", node), zap.String("step", s.ID))
	p.next.StepStarted(node, s)
}

func (p *loggedProgress) StepFinished(node string, s rollout.Step, res steps.Result, err error) {
	if err != nil {
		p.log.Error("step failed", zap.String("node", node), zap.String("step", s.ID), zap.Error(err))
	} else {
		p.log.Info("step done", zap.String("node", node), zap.String("step", s.ID), zap.String("note", res.Note))
	}
	p.next.StepFinished(node, s, res, err)
}

func (p *loggedProgress) Transfer(node string, s rollout.Step, tp steps.FetchProgress) {
	if tp.Final || tp.Retries > 0 && tp.Done == 0 {
		p.log.Info("transfer", zap.String("node", node), zap.String("step", s.ID), zap.Int64("done", tp.Done), zap.Int("retries", tp.Retries))
	}
	p.next.Transfer(node, s, tp)
}

func (p *loggedProgress) Logf(node, format string, args ...any) {
	p.log.Info(fmt.Sprintf(format, args...), zap.String("node", node))
	p.next.Logf(node, format, args...)
}

// teeProgress shows a run's progress in two places: the operator's
// display and the run's events file.
type teeProgress [2]rollout.Progress

func (t teeProgress) StepStarted(node string, s rollout.Step) {
	for _, p := range t {
		p.StepStarted(node, s)
	}
}

func (t teeProgress) StepFinished(node string, s rollout.Step, res steps.Result, err error) {
	for _, p := range t {
		p.StepFinished(node, s, res, err)
	}
}

func (t teeProgress) Transfer(node string, s rollout.Step, tp steps.FetchProgress) {
	for _, p := range t {
		p.Transfer(node, s, tp)
	}
}

func (t teeProgress) Logf(node, format string, args ...any) {
	for _, p := range t {
		p.Logf(node, format, args...)
	}
}

func (t teeProgress) RunProgress(rp rollout.RunProgress) {
	for _, p := range t {
		if s, ok := p.(rollout.RunProgressShower); ok {
			s.RunProgress(rp)
		}
	}
}

func (p *loggedProgress) RunProgress(rp rollout.RunProgress) {
	p.log.Info("run progress", zap.String("node", rp.Node), zap.String("event", rp.Event), zap.Int("done", rp.Done), zap.Int("nodes", rp.Nodes))
	if s, ok := p.next.(rollout.RunProgressShower); ok {
		s.RunProgress(rp)
	}
}
