"""Enrollment and admin tokens: stored by hash, with expiry, uses and revocation."""

from __future__ import annotations

from sqlmodel import select

from edgeatlas.coordinator.store.engine import now_ms
from edgeatlas.coordinator.tables import TokenRow
from edgeatlas.protos.errors import InvalidInput, NotFound


class Tokens:
    """The Store's methods for tokens (its engine, writer and caches are set up in sql.Store)."""

    def add_token(self, kind: str, token_hash: str, expires_ms: int | None = None,
                  uses: int | None = None) -> None:
        with self._write, self.session() as s:
            if s.exec(select(TokenRow).where(TokenRow.token_hash == token_hash)).first() is None:
                s.add(TokenRow(kind=kind, token_hash=token_hash, created_ms=now_ms(),
                               expires_ms=expires_ms, uses_left=uses))
                s.commit()

    def bootstrap_token(self, kind: str, token_hash: str) -> int:
        """Makes this the start-up token of its kind: stored if new, and every other start-up token of the
        kind revoked (a restart with new tokens retires the old). The number revoked."""
        with self._write, self.session() as s:
            row = s.exec(select(TokenRow).where(TokenRow.token_hash == token_hash)).first()
            if row is None:
                row = TokenRow(kind=kind, token_hash=token_hash, created_ms=now_ms())
            if row.kind != kind:
                raise InvalidInput(f"the {kind} token given is already a token of another kind")
            row.bootstrap, row.revoked = True, False
            s.add(row)
            old = s.exec(select(TokenRow).where(TokenRow.kind == kind, TokenRow.bootstrap,
                                                TokenRow.token_hash != token_hash, TokenRow.revoked == False)  # noqa: E712
                         ).all()
            for stale in old:
                stale.revoked = True
                s.add(stale)
            s.commit()
            return len(old)

    def has_token(self, kind: str) -> bool:
        with self.session() as s:
            return s.exec(select(TokenRow).where(TokenRow.kind == kind)).first() is not None

    def check_token(self, kind: str, token_hash: str, consume: bool = False) -> bool:
        """True when a live token of this kind has this hash; `consume` spends one use."""
        with self._write, self.session() as s:
            row = s.exec(select(TokenRow).where(TokenRow.token_hash == token_hash,
                                                TokenRow.kind == kind)).first()
            if row is None or row.revoked or (row.expires_ms and row.expires_ms < now_ms()):
                return False
            if row.uses_left is not None:
                if row.uses_left <= 0:
                    return False
                if consume:
                    row.uses_left -= 1
                    s.add(row)
                    s.commit()
            return True

    def revoke_token(self, token_hash: str) -> bool:
        with self._write, self.session() as s:
            row = s.exec(select(TokenRow).where(TokenRow.token_hash == token_hash)).first()
            if row is None:
                raise NotFound("no such token")
            row.revoked = True
            s.add(row)
            s.commit()
            return True
