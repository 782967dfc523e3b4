# syntax=docker/dockerfile:1
# The Alcove image: one static binary for every daemon (master, worker, csi,
# fuse, extender) and the CLI. `docker build -t alcove/alcove:v0.1.0 .`
# The end-to-end test packs the same layout without a registry or a docker
# daemon (hack/k8s-images.sh): static alcove + static busybox.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/alcove ./cmd/alcove

# busybox-static supplies mount(8)/umount(8): the CSI node plugin bind-mounts
# volumes through k8s.io/mount-utils, which runs them. fusermount is not
# needed: FUSE daemons run as root and mount /dev/fuse directly.
FROM debian:bookworm-slim AS tools
RUN apt-get update && apt-get install -y --no-install-recommends busybox-static ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM scratch
COPY --from=tools /bin/busybox /bin/busybox
COPY --from=tools /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/busybox", "mkdir", "-m", "1777", "/tmp"]
COPY --from=build /out/alcove /usr/local/bin/alcove
ENV PATH=/usr/local/bin:/bin
# Master 19998/19999, worker 29999/30000 (raw data 29998), extender 8099.
EXPOSE 19998 19999 29998 29999 30000 8099
# Non-root by default (extender, CSI controller). The chart runs the master,
# workers and the CSI node plugin as root: they own host directories, and the
# node plugin mounts.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/alcove"]
