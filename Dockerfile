# The leasehold image: one static binary, nothing else.
#
#   docker build -t ghcr.io/leasehold/leasehold:dev .
#
# The build is pure Go (CGO_ENABLED=0), so the binary needs no libc and runs
# on distroless/static, which has no shell and no package manager but has CA
# certificates, /etc/passwd and tzdata. test/deploy runs the same go build
# command, read from this file, and checks that its output is a static ELF.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/leasehold ./cmd/leasehold

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/leasehold /leasehold
# nonroot: UID and GID 65532, which the Deployments' securityContext also names.
USER 65532:65532
ENTRYPOINT ["/leasehold"]
