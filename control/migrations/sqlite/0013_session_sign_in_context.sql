-- The sign-in context of a console session (issuer, acr, amr, auth_time as
-- the identity provider's ID token said, JSON), so that a resource that
-- requires step-up for a step can be decided in the console as for the
-- API. NULL (sessions from before, development sign-ins): no context, so
-- such steps stay refused.
ALTER TABLE web_sessions ADD COLUMN sign_in_context TEXT;
