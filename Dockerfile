# syntax=docker/dockerfile:1
#
# Warden in a container: one static binary, run as a user without
# privileges, on a root file system that may be read-only. Build it with
#   docker build -t warden .
# and see examples/compose and examples/kubernetes for running it.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static: the SQLite store is pure Go, so nothing links against libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/warden ./cmd/warden \
	&& mkdir -p /out/state/warden

FROM gcr.io/distroless/static-debian12:nonroot
# 65532 is the image's nonroot user. /var/lib/warden is the one place
# Warden writes (mount a volume there); its data directory is a directory
# it makes inside, with mode 0700, whatever the volume's own mode.
COPY --from=build /out/warden /usr/local/bin/warden
COPY --from=build --chown=65532:65532 /out/state/warden /var/lib/warden
USER 65532:65532
ENV WARDEN_DATA=/var/lib/warden/data \
	WARDEN_CONFIG=/etc/warden/warden.yaml
WORKDIR /var/lib/warden
# 7070: the server (token endpoint, decisions, admin API, /metrics).
# 7300: the gateway, when the configuration names one.
EXPOSE 7070 7300
ENTRYPOINT ["/usr/local/bin/warden"]
CMD ["serve"]
