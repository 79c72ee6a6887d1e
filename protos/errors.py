"""Domain errors every room raises; the coordinator maps them to gRPC codes, the CLI to exit codes."""


class EdgeAtlasError(Exception):
    """Base of every error a user can be shown as one line."""


class InvalidInput(EdgeAtlasError):
    """The input is malformed or out of range (a field, a file, a value)."""


class NotFound(EdgeAtlasError):
    """The named thing does not exist."""


class Unauthenticated(EdgeAtlasError):
    """A token or credential is missing, wrong, expired or revoked."""


class PermissionDenied(EdgeAtlasError):
    """The caller is known but may not touch this thing."""


class Conflict(EdgeAtlasError):
    """The request clashes with the current state (e.g. a stale lease)."""


class Unavailable(EdgeAtlasError):
    """A service the command needs cannot be reached."""


class IntegrityError(EdgeAtlasError):
    """Bytes do not match their content address."""


class ResourceExhausted(EdgeAtlasError):
    """Over a limit: message size, upload size, report rate."""
