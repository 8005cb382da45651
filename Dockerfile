# syntax=docker/dockerfile:1
#
# Images of Sluice, built from this repository:
#   docker build -t sluice:dev .                                          # the gateway (default target)
#   docker build --target extproc-example -t sluice-extproc-example:dev .  # the sample processor
# Both are static binaries (no cgo) on a distroless base, running as a non-root user.

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS="${TARGETOS:-linux}" GOARCH="${TARGETARCH:-amd64}" \
    go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/sluice ./cmd/sluice && \
    CGO_ENABLED=0 GOOS="${TARGETOS:-linux}" GOARCH="${TARGETARCH:-amd64}" \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/extproc-example ./cmd/extproc-example

# The sample external processor of the documented example (examples/kubernetes/ext-proc.yaml).
FROM gcr.io/distroless/static-debian12:nonroot AS extproc-example
COPY --from=build /out/extproc-example /usr/local/bin/extproc-example
USER 65532:65532
EXPOSE 18080
ENTRYPOINT ["/usr/local/bin/extproc-example"]

# The gateway. Last, so that it is what a plain `docker build` produces.
FROM gcr.io/distroless/static-debian12:nonroot AS sluice
ARG VERSION=dev
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="HTTP gateway for the Kubernetes Gateway API with external processing" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/sluice /usr/local/bin/sluice
USER 65532:65532
# 8080: the example Gateway's listener; 9901: admin (/healthz, /readyz, /metrics).
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["kube"]
