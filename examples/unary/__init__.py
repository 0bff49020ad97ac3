"""The smallest grpcstream client and server: one request, one response."""
