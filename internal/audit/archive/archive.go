// Package archive keeps sealed audit segments away from the data
// directory: in a directory (another disk, a mounted volume) or in an
// S3-compatible bucket. The audit log writes each file once, reads it back
// to check it, and only then forgets its own copy.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/warden-run/warden/internal/durable"
)

// Store is where archived files go. Names are plain file names
// (seg-00000000000000065536.log).
type Store interface {
	// Put stores size bytes from r under name. The audit log checks first
	// that nothing is there (Get), and never replaces a file; a directory
	// refuses to, an S3 bucket should (Object Lock).
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	// Get opens what name holds; ErrNotFound when nothing.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// String says where, for messages (never with credentials).
	String() string
}

// ErrNotFound means the archive holds no such file.
var ErrNotFound = errors.New("not in the archive")

var fileName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,99}$`)

func checkName(name string) error {
	if !fileName.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("archive: %q is not a file name", name)
	}
	return nil
}

// Dir is an archive in a directory.
type Dir struct{ Path string }

// NewDir makes the directory (mode 0700) if it is missing.
func NewDir(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return &Dir{Path: path}, nil
}

func (d *Dir) String() string { return d.Path }

// ErrExists means the archive already holds a file of that name.
var ErrExists = errors.New("already in the archive")

// Put writes to a temporary file, syncs it, links it into place (which
// fails if the name is taken: a file is written once) and syncs the
// directory: a crash leaves no file or the whole one.
func (d *Dir) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	f, err := os.CreateTemp(d.Path, name+".tmp*")
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	tmp := f.Name()
	n, err := io.Copy(f, r)
	if err == nil && n != size {
		err = fmt.Errorf("archive: %s: %d bytes written of %d", name, n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, filepath.Join(d.Path, name))
		if errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("%w: %s in %s", ErrExists, name, d.Path)
		}
	}
	os.Remove(tmp)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return durable.SyncDir(d.Path)
}

// Get opens the file.
func (d *Dir) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(d.Path, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, d.Path)
	}
	return f, err
}

// S3Config reaches an S3-compatible bucket.
type S3Config struct {
	// Endpoint is host[:port] (AWS: s3.amazonaws.com, or a region's).
	Endpoint string
	Bucket   string
	// Prefix is put before every name ("prod/audit/").
	Prefix string
	Region string
	// AccessKey and SecretKey are the credentials (read from files by the
	// configuration); both empty for the environment's (AWS_ACCESS_KEY_ID,
	// an instance role).
	AccessKey, SecretKey string
	// Insecure uses plain HTTP: for a store on loopback or in tests.
	Insecure bool
}

// S3 is an archive in an S3-compatible bucket.
type S3 struct {
	c      *minio.Client
	bucket string
	prefix string
	where  string
}

// NewS3 makes the client; it does not reach the store until it is used.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("archive: s3 needs an endpoint and a bucket")
	}
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	if cfg.AccessKey == "" && cfg.SecretKey == "" {
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.IAM{}})
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{Creds: creds, Secure: !cfg.Insecure, Region: cfg.Region})
	if err != nil {
		return nil, fmt.Errorf("archive: s3 endpoint %q: %w", cfg.Endpoint, err)
	}
	scheme := "https"
	if cfg.Insecure {
		scheme = "http"
	}
	return &S3{c: c, bucket: cfg.Bucket, prefix: cfg.Prefix, where: fmt.Sprintf("s3 %s://%s/%s/%s", scheme, cfg.Endpoint, cfg.Bucket, cfg.Prefix)}, nil
}

func (s *S3) String() string { return s.where }

// Put uploads the file; an upload is whole or absent.
func (s *S3) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := s.c.PutObject(ctx, s.bucket, s.prefix+name, r, size, minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		return fmt.Errorf("archive: put %s to %s: %w", name, s.where, err)
	}
	return nil
}

// Get downloads the file as it is read.
func (s *S3) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	o, err := s.c.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("archive: get %s from %s: %w", name, s.where, err)
	}
	// GetObject is lazy: a missing object shows at the first read.
	if _, err := o.Stat(); err != nil {
		o.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, s.where)
		}
		return nil, fmt.Errorf("archive: get %s from %s: %w", name, s.where, err)
	}
	return o, nil
}
