package main

import (
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"
)

// openLog appends to <dir>/sentinel-cli.log, rotated by size. Compression
// stays off: lumberjack's compressor races with Close.
func openLog(dir string) (*zap.Logger, func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	lj := &lumberjack.Logger{Filename: filepath.Join(dir, "sentinel-cli.log"), MaxSize: 50, MaxBackups: 5}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeLevel = zapcore.CapitalLevelEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(lj), zap.InfoLevel)
	log := zap.New(core)
	return log, func() { _ = log.Sync(); _ = lj.Close() }, nil
}

// commandLine renders argv so that it can be pasted back into a shell, as
// the recovery procedure asks.
func commandLine(argv []string) string {
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
