from paymentflow.api.exceptions import ApplicationError, ConflictError


class EmailTaken(ConflictError):
    code = "EMAIL_TAKEN"
    default_message = "An account with this email already exists."


class InvalidCredentials(ApplicationError):
    status_code = 401
    code = "INVALID_CREDENTIALS"
    default_message = "Invalid email or password."


class TokenNotValid(ApplicationError):
    status_code = 401
    code = "TOKEN_NOT_VALID"
    default_message = "Token is invalid or expired."
