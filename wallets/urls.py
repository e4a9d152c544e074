from django.urls import path

from wallets import views

urlpatterns = [
    path("wallet", views.WalletView.as_view(), name="wallet"),
    path("wallet/deposit", views.DepositView.as_view(), name="wallet-deposit"),
    path("wallet/withdraw", views.WithdrawView.as_view(), name="wallet-withdraw"),
    path("wallet/top-ups", views.TopUpListCreateView.as_view(), name="wallet-top-ups"),
    path("wallet/transactions", views.TransactionListView.as_view(), name="wallet-transactions"),
]
