"""Use the API of getting_started_app.py: register, log in, post, vote, read the feed.

Run it while the app is served: ``python getting_started_client.py [base URL]``.
"""

import sys

import httpx

EMAIL = "ada@example.com"
PASSWORD = "correct horse battery staple"  # noqa: S105 - a sample account


def main(base_url: str) -> None:
    with httpx.Client(base_url=base_url) as api:
        registered = api.post("/users", json={"email": EMAIL, "password": PASSWORD})
        registered.raise_for_status()

        login = api.post("/login", data={"username": EMAIL, "password": PASSWORD})
        login.raise_for_status()
        api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

        created = api.post("/posts", json={"title": "Hello, feed", "content": "My first post"})
        created.raise_for_status()
        post = created.json()

        api.post("/vote", json={"post_id": post["id"], "dir": 1}).raise_for_status()

        feed = api.get("/posts")
        feed.raise_for_status()
        for item in feed.json():
            print(f"{item['score']:>3} point(s)  {item['title']!r} by {item['owner']['username']}")
        print(api.get("/hello").json()["message"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
