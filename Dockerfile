# Alcove: one static binary on a minimal base.
# Build: docker build -t alcove:dev .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/alcove ./cmd/alcove

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/alcove /usr/local/bin/alcove
# Master 19998/19999, worker 29999/30000, job master 20001, job worker 30001, extender 8099.
EXPOSE 19998 19999 29999 30000 20001 30001 8099
ENTRYPOINT ["/usr/local/bin/alcove"]
