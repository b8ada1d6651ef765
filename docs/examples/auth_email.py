"""Account mail: SMTP settings, branded messages, and a route for verified members only."""

from typing import Annotated

from fastapi import Depends, FastAPI

from postkit import PostKit, PostKitSettings, User, hookimpl
from postkit.mail import Mailer


class BrandedEmails:
    """Writes the password reset mail in the app's own words; postkit writes the others."""

    @hookimpl
    def render_email(
        self, kind: str, user: User, link: str | None, to: str
    ) -> tuple[str, str] | None:
        if kind != "password_reset":
            return None  # the next plugin, or postkit's plain-text default, answers
        subject = "Example: choose a new password"
        body = f"Hello {user.username},\n\nChoose a new password here: {link}\n\nThe Example team"
        return subject, body


def production_settings(*, secret_key: str, smtp_password: str) -> PostKitSettings:
    """What a deployment sets (as keywords here; POSTKIT_* environment variables work too)."""
    return PostKitSettings(
        environment="production",
        secret_key=secret_key,
        email_enabled=True,
        public_base_url="https://app.example.com",  # links point at your front end
        smtp_host="smtp.example.com",
        smtp_port=587,
        smtp_security="starttls",
        smtp_username="postkit",
        smtp_password=smtp_password,
        smtp_from="Example <no-reply@example.com>",
        require_verified_email=True,
    )


def create_app(settings: PostKitSettings, *, mailer: Mailer | None = None) -> FastAPI:
    kit = PostKit(settings, plugins=[BrandedEmails()], mailer=mailer)
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router, prefix="/api")

    @app.get("/api/members")
    async def members(user: Annotated[User, Depends(kit.verified_user)]) -> dict[str, str]:
        # 401 without a token, 403 EMAIL_NOT_VERIFIED until the address is verified.
        return {"welcome": user.username}

    kit.install_error_handlers(app)
    return app
