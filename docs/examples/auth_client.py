"""A client of a postkit API: log in, call, refresh when the access token expires, log out."""

import httpx


class PostkitClient:
    """Keeps the token pair of one login and renews it when the API answers 401."""

    def __init__(self, http: httpx.AsyncClient, *, prefix: str = "/api") -> None:
        self.http = http
        self.prefix = prefix
        self.access_token = ""
        self.refresh_token = ""

    async def login(self, username_or_email: str, password: str) -> None:
        response = await self.http.post(
            f"{self.prefix}/login",
            data={"username": username_or_email, "password": password},  # a form, not JSON
        )
        response.raise_for_status()
        self._keep(response.json())

    async def get(self, path: str) -> httpx.Response:
        response = await self._get(path)
        if response.status_code == 401 and self.refresh_token:
            await self.refresh()  # the access token expired: renew it once, then retry
            response = await self._get(path)
        return response

    async def refresh(self) -> None:
        response = await self.http.post(
            f"{self.prefix}/token/refresh", json={"refresh_token": self.refresh_token}
        )
        response.raise_for_status()  # 401 INVALID_REFRESH_TOKEN: log in again
        self._keep(response.json())  # the old refresh token is spent: keep the new one

    async def logout(self, *, everywhere: bool = False) -> None:
        path = "/logout/all" if everywhere else "/logout"
        response = await self.http.post(f"{self.prefix}{path}", headers=self._auth())
        response.raise_for_status()
        self.access_token = self.refresh_token = ""

    async def _get(self, path: str) -> httpx.Response:
        return await self.http.get(f"{self.prefix}{path}", headers=self._auth())

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    def _keep(self, pair: dict[str, str]) -> None:
        self.access_token = pair["access_token"]
        self.refresh_token = pair["refresh_token"]
