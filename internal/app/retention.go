package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/warden-run/warden/internal/audit"
	"github.com/warden-run/warden/internal/audit/archive"
	"github.com/warden-run/warden/internal/audit/filelog"
	"github.com/warden-run/warden/internal/config"
)

// RetentionActor names the archiving in the audit log.
const RetentionActor = "warden:retention"

// archiveStore makes the store audit.archive names, nil when none.
func archiveStore(c config.Archive) (archive.Store, error) {
	switch {
	case c.Dir != "":
		return archive.NewDir(c.Dir)
	case c.S3 != nil:
		cfg := archive.S3Config{Endpoint: c.S3.Endpoint, Bucket: c.S3.Bucket, Prefix: c.S3.Prefix, Region: c.S3.Region, Insecure: c.S3.Insecure}
		if c.S3.AccessKeyFile != "" {
			var err error
			if cfg.AccessKey, err = readSecret(c.S3.AccessKeyFile); err != nil {
				return nil, fmt.Errorf("audit.archive.s3.access_key_file: %w", err)
			}
			if cfg.SecretKey, err = readSecret(c.S3.SecretKeyFile); err != nil {
				return nil, fmt.Errorf("audit.archive.s3.secret_key_file: %w", err)
			}
		}
		return archive.NewS3(cfg)
	}
	return nil, nil
}

// retain archives, every interval, the sealed segments last written more
// than keep ago, and records each one moved in the log itself: which
// entries, where to, and the digests they left with.
func retain(ctx context.Context, be *filelog.Log, l *audit.Log, c config.Archive, log *slog.Logger) {
	where := be.ArchiveName()
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	// Each move is in the log, durably, before the segment leaves the data
	// directory: a move cut short is recorded again when it is made again,
	// never not at all.
	note := func(a filelog.ArchivedSegment) error {
		detail, _ := json.Marshal(map[string]any{"first": a.First, "count": a.Count, "archive": where,
			"log_sha256": a.LogSHA256, "idx_sha256": a.IdxSHA256, "bytes": a.LogBytes + a.IdxBytes})
		e := &audit.Entry{Time: time.Now(), Kind: audit.KindAdmin, Actor: RetentionActor, Action: "audit.archive",
			Target: fmt.Sprintf("entries %d-%d", a.First, a.First+a.Count-1), Outcome: "done", Detail: detail}
		_, err := l.AppendDurable(ctx, e)
		return err
	}
	for {
		_, err := be.Archive(ctx, time.Now().Add(-c.KeepLocal), note)
		if err != nil && ctx.Err() == nil {
			log.Error("audit: archiving sealed segments failed; they stay here, and the next run tries again", "archive", where, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
