# Multi-stage build of the sample's one binary, cart; docker-compose.yml runs
# it in each role.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/cart ./sample/cmd/cart

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/cart /usr/local/bin/cart
USER nobody
ENTRYPOINT ["/usr/local/bin/cart"]
